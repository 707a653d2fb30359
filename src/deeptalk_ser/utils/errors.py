"""Error types that name what the user must fix (the file and line, or the config key), and the
one-line report of them that the entry scripts print instead of a traceback."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


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


class ConfigError(ValueError):
    """A config value that cannot work (``classifier.C=-1``, more folds than speakers): named by
    its key, raised before any expensive stage starts."""

    def __init__(self, key: str, problem: str) -> None:
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}")

    def __reduce__(self):
        return type(self), (self.key, self.problem)


#: what a user fixes in their data or config; anything else is a bug and keeps its traceback
USER_ERRORS = (DataError, ConfigError)


@contextmanager
def report_user_errors(script: str) -> Iterator[None]:
    """Print a :data:`USER_ERRORS` as one line (``<script>: error: <where>: <problem>``) and exit
    with status 1, instead of Hydra's full traceback; ``HYDRA_FULL_ERROR=1`` keeps the traceback."""
    try:
        yield
    except Exception as exc:
        user = user_error_in(exc)
        if user is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"{script}: error: {user}\n(HYDRA_FULL_ERROR=1 shows the traceback)", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def user_error_in(exc: BaseException) -> BaseException | None:
    """The user error behind ``exc``: itself, or the cause Hydra's ``instantiate`` wrapped it in."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, USER_ERRORS):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None
