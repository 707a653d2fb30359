"""Error types that name what the user must fix (the file and line, or the config key), and the
translation of file-system failures (disk full, read-only cache) into them; ``utils/jobs.py`` prints
them as one line instead of a traceback."""

from __future__ import annotations

import errno
import os
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


def user_error_in(exc: BaseException) -> BaseException | None:
    """The user error behind ``exc``: itself, or the cause Hydra's ``instantiate`` wrapped it in."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, USER_ERRORS):
            return cur
        if isinstance(cur, OSError) and cur.errno in DISK_FULL:  # a full disk outside any :func:`stage`
            return file_system_error(cur)
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


# ----------------------------------------------------------------------------- the file system

#: errno of a write refused for want of space (or quota): the user frees space or writes elsewhere
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
#: errno of a write refused for want of write access (read-only mount, no permission)
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)
#: what a job's stages write, and the setting that moves it
CACHE, RUN_DIR = "paths.cache_dir", "hydra.run.dir"


def file_system_error(exc: OSError, stage: str | None = None, path: str | Path | None = None,
                      setting: str | None = None) -> DataError | None:
    """``exc`` as the user's problem (a full disk, a refused write) naming the file (else ``path``)
    and the stage; what to set (``setting``) is suggested when the file is under ``path``.
    None for any other ``OSError`` (a bug, or a missing file the caller names itself)."""
    if exc.errno not in DISK_FULL + NOT_WRITABLE:
        return None
    filename = os.fsdecode(exc.filename) if exc.filename is not None else None
    inside = path is not None and setting is not None and (filename is None or Path(filename).is_relative_to(path))
    during = f" during {stage}" if stage else ""
    if exc.errno in DISK_FULL:
        problem = f"disk full{during} ({os.strerror(exc.errno)}): free space"
        fix = f" or set {setting}=<a folder on another disk>" if inside else ""
    else:  # maybe a read (a label file without read permission): say what the system said
        problem = f"{os.strerror(exc.errno).lower()}{during}"
        fix = f": set {setting}=<a writable folder>" if inside else ""
    return DataError(filename or path or "(a file being written)", problem + fix)


@contextmanager
def stage(name: str, path: str | Path, setting: str | None = CACHE) -> Iterator[None]:
    """Run one stage of a job (``prepare``, ``extraction``, ``training store``, ``training``,
    ``results``) that writes under ``path``: a full disk or a refused write inside it ends the job
    as one :class:`DataError` naming the file and the stage (the writers remove what they had
    half-written), instead of a traceback ending in ``OSError: [Errno 28]``."""
    try:
        yield
    except OSError as exc:
        user = file_system_error(exc, name, path, setting)
        if user is None:
            raise
        raise user from exc


def cache_not_writable(path: str | Path, what: str, exc: OSError | None = None) -> DataError:
    """The cache cannot be written and holds no finished ``what`` at ``path`` (a finished one is
    reused without writing): say that building it needs write access, and where to get it."""
    reason = f" ({os.strerror(exc.errno)})" if exc is not None and exc.errno else ""
    return DataError(path, f"no {what} here to reuse, and building it needs write access, which this cache "
                           f"does not give{reason}: set {CACHE}=<a writable folder> (or DEEPTALK_CACHE_DIR)")
