"""The ``prepare`` stage: corpus layout -> JSON-lines manifest, idempotent and incremental.

Durations and sample rates come from audio headers (no decoding), read in parallel threads.
A header cache keyed by (path, size, mtime) makes a re-run touch only new or changed files,
and a stamp of the loader options + file listing skips the whole stage when nothing changed.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf

from .corpora.base import CorpusLoader
from .errors import AudioError, DataError
from .io_utils import stable_hash, write_json_atomic
from .manifest import Utterance, read_manifest, write_manifest

log = logging.getLogger(__name__)


@dataclass
class PrepareReport:
    manifest: Path
    n_utterances: int
    reused: bool
    headers_read: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)


def read_header(path: Path) -> tuple[float, int]:
    """(duration in s, sample rate) from the file header; a clear error for bad files."""
    if not path.is_file():
        raise AudioError(path, "audio file not found")
    if path.stat().st_size == 0:
        raise AudioError(path, "audio file is empty (0 bytes)")
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as exc:  # type: ignore[attr-defined]
        raise AudioError(path, f"unreadable audio header ({exc})") from exc
    if info.frames <= 0:
        raise AudioError(path, "audio file holds no samples")
    return info.frames / info.samplerate, int(info.samplerate)


def _stat_key(path: Path) -> list[int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return [-1, -1]
    return [st.st_size, st.st_mtime_ns]


def prepare_manifest(loader: CorpusLoader, out_dir: str | Path, on_error: str = "raise",
                     workers: int | None = None) -> PrepareReport:
    """Write ``<out_dir>/manifest.jsonl`` for ``loader``; see module docstring."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.jsonl"
    stamp_path = out_dir / "prepare_stamp.json"
    header_cache_path = out_dir / "headers.json"

    utts = loader.scan()
    if not loader.has_audio:
        stamp = stable_hash({"options": loader.options(), "ids": [u.id for u in utts]})
        return _finish(manifest_path, stamp_path, stamp, utts, headers_read=0, skipped=[], on_error=on_error)

    abs_paths = [loader.root / u.path if not Path(u.path).is_absolute() else Path(u.path) for u in utts]
    stats = [_stat_key(p) for p in abs_paths]
    stamp = stable_hash({"options": loader.options(), "on_error": on_error,
                         "files": [[u.id, u.path, u.speaker, u.label, u.split, s] for u, s in zip(utts, stats)]})
    if stamp_path.is_file() and manifest_path.is_file():
        if json.loads(stamp_path.read_text()).get("stamp") == stamp:
            log.info("manifest up to date: %s", manifest_path)
            prev = json.loads(stamp_path.read_text())
            return PrepareReport(manifest_path, prev["n_utterances"], reused=True, skipped=prev.get("skipped", []))

    cache: dict[str, Any] = json.loads(header_cache_path.read_text()) if header_cache_path.is_file() else {}
    todo = [i for i, (p, s) in enumerate(zip(abs_paths, stats)) if cache.get(str(p), [None, None])[:2] != s]
    results: dict[int, tuple[float, int] | AudioError] = {}

    def work(i: int) -> tuple[int, tuple[float, int] | AudioError]:
        try:
            return i, read_header(abs_paths[i])
        except AudioError as exc:
            return i, exc

    with ThreadPoolExecutor(max_workers=workers or min(32, (os.cpu_count() or 1) * 4)) as pool:
        for i, res in pool.map(work, todo, chunksize=64):
            results[i] = res
    skipped: list[dict[str, str]] = []
    for i, res in results.items():
        if isinstance(res, AudioError):
            if on_error == "raise":
                raise res
            skipped.append({"id": utts[i].id, "path": res.path, "reason": res.problem})
        else:
            cache[str(abs_paths[i])] = stats[i] + list(res)
    write_json_atomic(header_cache_path, cache)

    bad = {s["id"] for s in skipped}
    kept = []
    for u, p in zip(utts, abs_paths):
        if u.id in bad:
            continue
        _, _, dur, sr = cache[str(p)]
        u.duration, u.sample_rate = round(float(dur), 6), int(sr)
        u.path = str(p.resolve())  # manifests carry absolute paths: no root needed downstream
        kept.append(u)
    if skipped:
        log.warning("prepare skipped %d unreadable file(s), e.g. %s", len(skipped), skipped[0])
    return _finish(manifest_path, stamp_path, stamp, kept, headers_read=len(todo), skipped=skipped, on_error=on_error)


def _finish(manifest_path: Path, stamp_path: Path, stamp: str, utts: list[Utterance], headers_read: int,
            skipped: list[dict[str, str]], on_error: str) -> PrepareReport:
    if not utts:
        raise DataError(manifest_path.parent, "no usable utterances after prepare")
    write_manifest(manifest_path, utts)
    write_json_atomic(stamp_path, {"stamp": stamp, "n_utterances": len(utts), "skipped": skipped})
    return PrepareReport(manifest_path, len(utts), reused=False, headers_read=headers_read, skipped=skipped)


def load_prepared(loader: CorpusLoader, out_dir: str | Path, on_error: str = "raise") -> tuple[list[Utterance], PrepareReport]:
    """Prepare (or reuse) and read the manifest back."""
    report = prepare_manifest(loader, out_dir, on_error=on_error)
    return read_manifest(report.manifest), report
