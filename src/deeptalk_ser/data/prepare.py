"""The ``prepare`` stage: corpus layout -> JSON-lines manifest, idempotent and incremental.

Durations and sample rates come from audio headers (no decoding) and each file's content
checksum from its bytes, both read in parallel threads. A cache keyed by (path, size, mtime,
ctime, inode) makes a re-run touch only new or changed files, and a stamp of the loader options
+ file listing skips the whole stage when nothing changed. The checksum goes into the manifest,
so every cache built from a file (embedding stores, the training store) is keyed by its content.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from deeptalk_ser.data.corpora.base import CorpusLoader
from deeptalk_ser.data.audio.io import read_header
from deeptalk_ser.utils.errors import CACHE, AudioError, DataError, cache_not_writable, stage
from deeptalk_ser.utils.io import (file_checksum, file_stat, locked_unless_read_only, stable_hash, write_json_atomic,
                                   write_text_atomic)
from deeptalk_ser.utils.progress import progress
from deeptalk_ser.data.manifest import Utterance, read_manifest, write_manifest

log = logging.getLogger(__name__)


@dataclass
class PrepareReport:
    manifest: Path
    n_utterances: int
    reused: bool
    headers_read: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)


def prepare_manifest(loader: CorpusLoader, out_dir: str | Path, on_error: str = "raise",
                     workers: int | None = None, checksum: bool = True, read_only: bool = False) -> PrepareReport:
    """Write ``<out_dir>/manifest.jsonl`` for ``loader``; see module docstring. ``checksum=False``
    (headers only, stat-keyed caches) exists as the baseline of ``benchmarks/prepare_speed.py``.
    ``read_only``: the cache cannot be written; an up-to-date manifest is reused, anything else
    is a :class:`DataError` saying that preparing needs write access."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.jsonl"
    stamp_path = out_dir / "prepare_stamp.json"
    header_cache_path = out_dir / "headers.json"

    loader.on_error = on_error
    utts = loader.scan()
    rejected: list[dict[str, str]] = list(getattr(loader, "rejected", []))  # records the scan left out
    if rejected:
        log.warning("prepare skipped %d record(s) with a malformed file name or label, e.g. %s", len(rejected), rejected[0])
    if loader.has_audio:
        # Resolve the root once and join (resolving every file costs half of an incremental run
        # on a million files); symlinks inside the corpus are kept as links in manifest paths.
        root = str(loader.root.resolve())
        abs_paths = [os.path.normpath(os.path.join(root, u.path)) for u in utts]
        stats = [file_stat(p) for p in abs_paths]
    else:
        abs_paths, stats = [], [[0, 0]] * len(utts)
    stamp = stable_hash({"options": loader.options(), "on_error": on_error, "checksum": checksum,
                         # whole records (extras too: an edited label file changes them) + file stats
                         "files": [[u.to_dict(), s] for u, s in zip(utts, stats)]})
    if stamp_path.is_file() and manifest_path.is_file():
        prev = json.loads(stamp_path.read_text())
        if prev.get("stamp") == stamp:
            log.info("manifest up to date: %s", manifest_path)
            return PrepareReport(manifest_path, prev["n_utterances"], reused=True, skipped=prev.get("skipped", []))
    if read_only:
        raise cache_not_writable(out_dir, "up-to-date manifest of this corpus")
    if not loader.has_audio:
        return _finish(manifest_path, stamp_path, stamp, utts, headers_read=0, skipped=rejected, on_error=on_error)

    cache: dict[str, Any] = json.loads(header_cache_path.read_text()) if header_cache_path.is_file() else {}
    n_stat = 4  # file_stat's fields; an entry is stat + [duration, rate, checksum or None]

    def stale(path: str, stat: list[int] | None) -> bool:
        entry = cache.get(path)
        return entry is None or entry[:n_stat] != stat or (checksum and (len(entry) <= n_stat + 2 or entry[n_stat + 2] is None))

    todo = [i for i, (p, s) in enumerate(zip(abs_paths, stats)) if stale(p, s)]
    results: dict[int, tuple[float, int, str | None] | AudioError] = {}

    def work(i: int) -> tuple[int, tuple[float, int, str | None] | AudioError]:
        try:
            dur, sr = read_header(abs_paths[i])
            return i, (dur, sr, file_checksum(abs_paths[i]) if checksum else None)
        except AudioError as exc:
            return i, exc
        except OSError as exc:  # vanished or unreadable between the listing and the read
            return i, AudioError(abs_paths[i], f"cannot read file ({exc.strerror or exc})")

    with ThreadPoolExecutor(max_workers=workers or min(32, (os.cpu_count() or 1) * 4)) as pool:
        for i, res in progress(pool.map(work, todo, chunksize=64), total=len(todo), desc=f"prepare {loader.name}",
                               unit="file"):
            results[i] = res
    skipped: list[dict[str, str]] = list(rejected)
    for i, res in results.items():
        if isinstance(res, AudioError):
            if on_error == "raise":
                raise res
            skipped.append({"id": utts[i].id, "path": res.path, "reason": res.problem})
        else:
            cache[abs_paths[i]] = stats[i] + list(res)
    write_text_atomic(header_cache_path, json.dumps(cache, separators=(",", ":")))

    bad = {s["id"] for s in skipped[len(rejected):]}  # unreadable ones (the rejected never reached the listing)
    kept = []
    for u, p in zip(utts, abs_paths):
        if u.id in bad:
            continue
        dur, sr, *digest = cache[p][n_stat:]
        u.duration, u.sample_rate = round(float(dur), 6), int(sr)
        u.checksum = digest[0] if checksum and digest else None
        u.path = p  # manifests carry absolute paths: no root needed downstream
        kept.append(u)
    if len(skipped) > len(rejected):
        log.warning("prepare skipped %d unreadable file(s), e.g. %s", len(skipped) - len(rejected), skipped[len(rejected)])
    return _finish(manifest_path, stamp_path, stamp, kept, headers_read=len(todo), skipped=skipped, on_error=on_error)


def _finish(manifest_path: Path, stamp_path: Path, stamp: str, utts: list[Utterance], headers_read: int,
            skipped: list[dict[str, str]], on_error: str) -> PrepareReport:
    if not utts:
        raise DataError(manifest_path.parent, "no usable utterances after prepare")
    write_manifest(manifest_path, utts)
    write_json_atomic(stamp_path, {"stamp": stamp, "n_utterances": len(utts), "skipped": skipped})
    return PrepareReport(manifest_path, len(utts), reused=False, headers_read=headers_read, skipped=skipped)


def load_prepared(loader: CorpusLoader, out_dir: str | Path, on_error: str = "raise") -> tuple[list[Utterance], PrepareReport]:
    """Prepare (or reuse) and read the manifest back. Runs sharing a cache (or the ranks of one
    DDP run) take turns on a lock file beside the manifest: one writes, the others then reuse it.
    A read-only cache is read without the lock (nobody can change it)."""
    out_dir = Path(out_dir)
    with stage("prepare", out_dir, CACHE), locked_unless_read_only(FileLock(str(out_dir / ".prepare.lock"))) as writable:
        report = prepare_manifest(loader, out_dir, on_error=on_error, read_only=not writable)
    return read_manifest(report.manifest), report
