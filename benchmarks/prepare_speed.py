"""Prepare-stage speed on a synthetic VoxCeleb1-layout tree (speaker corpora are 10^5-10^6 files).

Measures, with :func:`deeptalk_ser.data.prepare.prepare_manifest` and the ``voxceleb1`` loader:

* cold: no manifest, no header cache (every header is read);
* incremental: after adding ``--new`` files (only those headers should be read);
* unchanged: a re-run with nothing changed (must be a stamp hit: ``reused``);
* baseline: the same cold and unchanged runs with ``checksum=False`` (headers and stat only, the
  path before content checksums), and the checksum's raw throughput on one 256 MB file (the
  tiny benchmark files hide the per-byte cost of real recordings).

"Cold" means a cold *manifest cache*: the tree was just written, so the OS page cache is warm;
on a network file system the first run is slower. Every file is a copy of one tiny valid WAV
(0.1 s, 16 kHz PCM16), so building 100,000 files takes seconds.

    python benchmarks/prepare_speed.py            # 100,000 files -> benchmarks/results/prepare_speed.json
    python benchmarks/prepare_speed.py --quick    # 10,000 files
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from deeptalk_ser.data.corpora.voxceleb1 import VoxCeleb1Corpus
from deeptalk_ser.data.prepare import prepare_manifest
from deeptalk_ser.utils.io import file_checksum

UTTS_PER_VIDEO = 10
VIDEOS_PER_SPEAKER = 10
SECONDS, SAMPLE_RATE = 0.1, 16000
RESULTS = Path(__file__).resolve().parent / "results" / "prepare_speed.json"


def tiny_wav_bytes() -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    sf.write(buf, 0.1 * np.sin(2 * np.pi * 440 * t), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def write_videos(root: Path, blob: bytes, jobs: list[tuple[str, str]]) -> int:
    """Write ``UTTS_PER_VIDEO`` copies of ``blob`` into each ``wav/<spk>/<video>/``."""
    n = 0
    for spk, video in jobs:
        d = root / "wav" / spk / video
        d.mkdir(parents=True, exist_ok=True)
        for i in range(1, UTTS_PER_VIDEO + 1):
            with open(d / f"{i:05d}.wav", "wb") as fh:
                fh.write(blob)
            n += 1
    return n


def build_tree(root: Path, n_files: int, blob: bytes) -> list[str]:
    """VoxCeleb1 layout with ``n_files`` (rounded up to whole videos) and its meta table."""
    n_videos = -(-n_files // UTTS_PER_VIDEO)
    n_speakers = -(-n_videos // VIDEOS_PER_SPEAKER)
    speakers = [f"id{10001 + s}" for s in range(n_speakers)]
    jobs = [(speakers[v // VIDEOS_PER_SPEAKER], f"video{v % VIDEOS_PER_SPEAKER:03d}") for v in range(n_videos)]
    write_videos(root, blob, jobs)
    meta = "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n" + "".join(
        f"{s}\tName_{s}\t{'mf'[i % 2]}\tUSA\tdev\n" for i, s in enumerate(speakers))
    (root / "vox1_meta.csv").write_text(meta, encoding="utf-8")
    return speakers


def timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run(base: Path, n_files: int, n_new: int, workers: int | None) -> dict[str, Any]:
    root, out = base / "voxceleb1", base / "prepared"
    blob = tiny_wav_bytes()
    speakers, build_s = timed(lambda: build_tree(root, n_files, blob))
    loader = VoxCeleb1Corpus(root)
    total = sum(1 for _ in (root / "wav").rglob("*.wav")) if n_files <= 20000 else None

    stat_out = base / "prepared_stat_only"
    stat_cold, stat_cold_s = timed(lambda: prepare_manifest(loader, stat_out, workers=workers, checksum=False))
    stat_same, stat_same_s = timed(lambda: prepare_manifest(loader, stat_out, workers=workers, checksum=False))
    assert not stat_cold.reused and stat_same.reused
    cold, cold_s = timed(lambda: prepare_manifest(loader, out, workers=workers))
    assert not cold.reused and cold.headers_read == cold.n_utterances, cold
    files = cold.n_utterances
    assert total is None or total == files
    scan_utts, scan_s = timed(loader.scan)

    # New videos spread over existing speakers: the file listing changes, the meta table does not.
    new_videos = -(-n_new // UTTS_PER_VIDEO)
    jobs = [(speakers[v % len(speakers)], f"new{v // len(speakers):03d}") for v in range(new_videos)]
    added = write_videos(root, blob, jobs)
    inc, inc_s = timed(lambda: prepare_manifest(loader, out, workers=workers))
    assert not inc.reused and inc.headers_read == added and inc.n_utterances == files + added, inc

    same, same_s = timed(lambda: prepare_manifest(loader, out, workers=workers))
    assert same.reused, same

    big = base / "big.bin"
    big.write_bytes(np.random.default_rng(0).integers(0, 255, 256 << 20, dtype=np.uint8).tobytes())
    file_checksum(big)  # page cache warm, as for the tree
    _, hash_s = timed(lambda: file_checksum(big))

    cpu = os.cpu_count() or 1
    return {
        "files": files,
        "cold_s": round(cold_s, 3),
        "cold_files_per_s": round(files / cold_s, 1),
        "incremental_s": round(inc_s, 3),
        "incremental_new_files": added,
        "incremental_files_per_s": round(added / inc_s, 1),
        "incremental_total_files": inc.n_utterances,
        "unchanged_s": round(same_s, 3),
        "unchanged_reused": same.reused,
        "scan_only_s": round(scan_s, 3),
        "baseline_stat_only": {"cold_s": round(stat_cold_s, 3), "cold_files_per_s": round(files / stat_cold_s, 1),
                               "unchanged_s": round(stat_same_s, 3)},
        "checksum_cold_overhead": round(cold_s / stat_cold_s, 3),
        "checksum_mb_per_s_one_thread": round(256 / hash_s, 1),
        "scan_only_files": len(scan_utts),
        "build_tree_s": round(build_s, 3),
        "speakers": len(speakers),
        "file_bytes": len(blob),
        "workers": workers or min(32, cpu * 4),  # prepare_manifest's default
        "cpu_count": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "note": "cold = no manifest/header cache; OS page cache warm (tree just written)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000, help="files in the tree (default 100,000)")
    parser.add_argument("--quick", action="store_true", help="10,000 files")
    parser.add_argument("--new", type=int, default=1000, help="files added before the incremental run")
    parser.add_argument("--workers", type=int, default=None, help="header-reading threads (default: prepare's)")
    parser.add_argument("--dir", type=Path, default=None, help="build here and keep it (default: a temp dir, removed)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results JSON (default {RESULTS})")
    args = parser.parse_args(argv)
    n_files = 10_000 if args.quick else args.files
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        if any(args.dir.iterdir()):
            parser.error(f"--dir {args.dir} must be empty (the benchmark times a cold run)")
        base, cleanup = args.dir, False
    else:
        base, cleanup = Path(tempfile.mkdtemp(prefix="prepare_speed_")), True
    try:
        result = run(base, n_files, args.new, args.workers)
    finally:
        if cleanup:  # deleting 10^5 files can take minutes on a slow disk: say why we wait
            print(f"removing {base} ...", file=sys.stderr, flush=True)
            shutil.rmtree(base, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
