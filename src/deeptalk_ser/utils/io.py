"""Atomic file writes: a crash never leaves a half-written result that looks finished."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from deeptalk_ser.utils.errors import NOT_WRITABLE, DataError

if TYPE_CHECKING:
    from filelock import BaseFileLock


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Name ``path`` in an ``OSError`` of the block that names no file (``write()`` failing on a
    full disk names none), so the one-line report says which file could not be written."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds (on a
    failure, a full disk included, the temporary file is removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with writing(path):
            yield tmp_path
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; keep the usual mode
            os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def locked_unless_read_only(lock: "BaseFileLock") -> Iterator[bool]:
    """Hold ``lock`` (a file lock beside a cache entry) for the block and yield True; yield False,
    holding nothing, when its folder cannot be written (read-only mount, no write permission):
    nobody can change the entry then, so the caller may reuse it if complete, and otherwise says
    what needs write access instead of failing on the lock file."""
    try:
        Path(lock.lock_file).parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError as exc:
        if exc.errno not in NOT_WRITABLE:
            raise
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def make_temp_dir(parent: str | Path, prefix: str) -> Path:
    """A fresh folder in ``parent`` with the mode ``mkdir`` would give it (``mkdtemp`` makes
    0700 folders, which, renamed into a shared cache, lock the rest of a lab group out)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_csv_atomic(path: str | Path, rows: Any, columns: Any) -> None:
    """``rows`` (dicts) as a CSV table of ``columns`` (other keys ignored), written atomically."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def stable_hash(obj: Any, length: int = 16) -> str:
    """Short content hash of a JSON-able object (key order independent)."""
    blob = json.dumps(obj, sort_keys=True, default=_json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def iter_lines(path: str | Path, what: str = "file") -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline) for each non-blank line of a UTF-8 text
    file (a leading byte-order mark is dropped), so every parser can name the bad line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, f"{what} not found")
    with open(path, encoding="utf-8-sig", newline="") as fh:
        lineno = 0
        try:
            for lineno, line in enumerate(fh, 1):  # noqa: B007 - lineno is used in the except
                line = line.rstrip("\r\n")
                if line.strip():
                    yield lineno, line
        except UnicodeDecodeError as exc:
            raise DataError(path, f"not UTF-8 text ({exc.reason})", line=lineno + 1) from exc


def file_stat(path: str | Path) -> list[int] | None:
    """``[size, mtime_ns, ctime_ns, inode]`` of a file (None if it is missing): the cheap change
    detector of prepare stamps, header caches and loaders' label-file fingerprints.

    Size and mtime alone are fooled by a replacement that keeps both (``cp -p``, ``rsync -a``,
    tools that restore timestamps); the inode-change time cannot be set by user code and the
    inode changes when a file is replaced by rename, so either notices it. What is then reused
    is decided by the content checksum (:func:`file_checksum`), recomputed only when this changes.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def file_checksum(path: str | Path, chunk: int = 1 << 20) -> str:
    """xxh3-64 of a file's bytes (hex): the content fingerprint in manifests and store keys.
    Non-cryptographic on purpose (several GB/s); it guards caches against changed inputs, not
    against an adversary."""
    import xxhash

    h = xxhash.xxh3_64()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
