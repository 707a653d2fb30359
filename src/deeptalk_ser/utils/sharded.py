"""Sharded, resumable, locked cache entries: the mechanism the embedding store and the training
store share (``embedding/shards.py``, ``training/crop_store.py``).

Both fill a cache entry from shards that several processes write (DDP ranks, a process pool),
resume after a kill without redoing finished shards, and let one writer work on an entry at a time:

- :func:`writer_lock`: one writer per entry; another run waits (and says so); a read-only cache
  is one line saying what needs write access.
- :func:`write_shard_file`: temporary name, fsync, rename, so a file under its final name is finished.
- :func:`finished_shards`: the shard files that pass the store's own check, each shard once;
  leftovers of a kill (``*.tmp``) and invalid files are ignored (deleted when cleaning).
- :func:`check_coverage`: the merge's count: every item of the work in exactly one shard.
- :func:`replace_dir`: the merged entry built in a temporary folder and renamed into place.
- :func:`matching_json`: a key/meta file that was written for this exact key, else None.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, TypeVar

import numpy as np
from filelock import FileLock, Timeout

from deeptalk_ser.utils.errors import NOT_WRITABLE, cache_not_writable
from deeptalk_ser.utils.io import atomic_path, make_temp_dir, writing

log = logging.getLogger(__name__)
K = TypeVar("K")
T = TypeVar("T")


class ShardsIncomplete(RuntimeError):
    """The finished shards do not account for every item of the work (names the missing ones)."""


@contextmanager
def writer_lock(lock_file: Path, entry: Path, what: str) -> Iterator[None]:
    """Hold the file lock of a cache ``entry`` for the block. A run that finds it held logs that
    it waits for the other writer; a folder that cannot be written is :func:`cache_not_writable`
    (``what``: the entry that would have been reused)."""
    lock = FileLock(str(lock_file))
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.warning("another run is writing %s (lock %s): waiting for it", entry, lock_file)
            lock.acquire()
    except OSError as exc:
        if exc.errno in NOT_WRITABLE:
            raise cache_not_writable(entry, what, exc) from exc
        raise
    try:
        yield
    finally:
        lock.release()


def write_shard_file(path: Path, fill: Callable[[IO[bytes]], Any]) -> Path:
    """Write ``path`` through ``fill(binary file)`` under a temporary ``.<name>.*.tmp`` name,
    fsync it and rename it into place: a kill (or a full disk) never leaves a shard that looks
    finished."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fill(f)
        f.flush()
        os.fsync(f.fileno())
    return path


def finished_shards(folder: Path, parse: Callable[[str], K | None], check: Callable[[K, Path], T],
                    clean: bool = False) -> dict[K, T]:
    """Finished shards of ``folder`` by shard id: ``parse(file name)`` gives a shard file's id
    (None: not a shard file), ``check(id, path)`` reads what the store needs from it or raises
    why it cannot be used (``ValueError``, ``OSError``, a missing field...).

    Invalid files are logged and skipped, so their shards are done again; with ``clean`` (only
    the lock holder) they, and temporary files of interrupted writes, are deleted. A shard held
    by two valid files (two ranks after a change of world size) counts once: the first by name."""
    found: dict[K, T] = {}
    names: dict[K, str] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        if path.name.endswith(".tmp"):
            if clean:
                path.unlink(missing_ok=True)
            continue
        k = parse(path.name)
        if k is None:
            continue
        try:
            info = check(k, path)
        except Exception as exc:  # unreadable, truncated, foreign: redo that shard
            log.warning("ignoring shard file %s: %s", path, exc)
            if clean:
                path.unlink(missing_ok=True)
            continue
        if k in found:
            log.warning("shard %s exists twice (%s, %s): using the first", k, names[k], path.name)
        else:
            found[k], names[k] = info, path.name
    return found


def check_coverage(names: np.ndarray, parts: Iterable[np.ndarray], what: str = "items") -> None:
    """Every position of the work (``names``, one per position) appears in exactly one of
    ``parts`` (the positions each finished shard accounts for); else :class:`ShardsIncomplete`
    naming up to 20 of the missing (or repeated) ones."""
    count = np.zeros(len(names), np.int32)
    for part in parts:
        np.add.at(count, np.asarray(part, np.int64), 1)
    for bad, problem in ((count == 0, "are in no finished shard (missing shards?)"),
                         (count > 1, "are in more than one shard")):
        idx = np.flatnonzero(bad)
        if len(idx):
            raise ShardsIncomplete(f"{len(idx)} of {len(names)} {what} {problem}: "
                                   f"{names[idx[:20]].tolist()}{' ...' if len(idx) > 20 else ''}")


@contextmanager
def replace_dir(path: Path, what: str) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; when the block succeeds it replaces
    ``path`` (an old one is moved aside, then removed), so readers see a whole entry or none.
    On any failure the temporary folder is removed and an ``OSError`` names ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        if exc.errno in NOT_WRITABLE:
            raise cache_not_writable(path, what, exc) from exc
        raise
    try:
        with writing(path):
            yield tmp
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def matching_json(path: Path, expected: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON object at ``path`` if every field of ``expected`` is recorded there as it is
    (compared after a JSON round trip), else None: absent, unreadable, or written for other work."""
    if not path.is_file():
        return None
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("%s is unreadable (%s): not reused", path, exc)
        return None
    want = json.loads(json.dumps(expected, default=str))
    if not isinstance(found, dict) or any(found.get(k) != v for k, v in want.items()):
        return None
    return found
