"""Error types that always name the offending file, so a user can fix the input."""

from __future__ import annotations

from pathlib import Path


class DataError(RuntimeError):
    """Bad corpus input: a missing root, a malformed label line, a duplicate id, bad audio."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        self.path = str(path)
        self.problem = problem
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):  # pickle (DataLoader workers) with the real constructor arguments
        return type(self), (self.path, self.problem, self.line)


class AudioError(DataError):
    """An audio file that cannot be read, is empty or is truncated."""
