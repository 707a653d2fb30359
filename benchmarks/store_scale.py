"""Embedding store at scale: a synthetic 1,000,000 x 256 store (random float32 rows).

Steps, each in a fresh subprocess so that its peak RSS is its own (``ru_maxrss``):

* ``write_float32`` / ``write_float16``: ``EmbeddingStore.write`` of an in-memory array (the
  array itself, 1 GiB at float32, is part of that process's RSS: see ``rss_before_mb``);
* ``write_shards`` (set-up for the merge): 100 rank shards as the extraction writes them;
* ``merge``: ``scan_shards`` (read and check every shard's index) + ``merge_shards`` into a
  float32 store, rows streamed shard by shard into a memory-mapped ``embeddings.npy``;
* ``open``: ``EmbeddingStore.open`` (memory map + ids) and building the id index;
* ``select_float32`` / ``select_float16``: ``select`` a random 10 % of the ids (shuffled order).

Files go to a temporary folder on the same disk (removed at the end); the page cache is warm
(the stores were just written), so the reads measure memory-mapped access, not a cold disk.

    python benchmarks/store_scale.py            # 1,000,000 rows
    python benchmarks/store_scale.py --quick    # 100,000 rows
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 256
N_SHARDS = 100


def rss_mb(field: str = "VmRSS") -> float:
    """Current resident memory (``VmRSS``), or its anonymous (``RssAnon``: heap, arrays) or
    file-backed (``RssFile``: mapped files, e.g. the memory-mapped store) part, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def ids_for(n: int) -> list[str]:
    return [f"utt{i:07d}" for i in range(n)]


def data(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM), dtype=np.float32)


def step(name: str, n: int, work: Path) -> dict:
    """Run one step in this process; returns its measurements."""
    from deeptalk_ser.embedding.store import EmbeddingStore

    if name in ("write_shards", "merge"):
        from deeptalk_ser.embedding import shards as dx
    out: dict = {"rss_after_imports_mb": rss_mb()}
    if name.startswith("write_float"):
        dtype = name.removeprefix("write_")
        ids, X = ids_for(n), data(n)
        out["rss_before_mb"] = rss_mb()
        t0 = time.perf_counter()
        EmbeddingStore.write(work / dtype, ids, X, {"key": {"synthetic": n}}, dtype=dtype)
        out["seconds"] = time.perf_counter() - t0
        out["size_mb"] = (work / dtype / "embeddings.npy").stat().st_size / 2**20
    elif name == "write_shards":
        plan = dx.ShardPlan(n, -(-n // N_SHARDS))
        shard_dir = work / "shards"
        shard_dir.mkdir(parents=True, exist_ok=True)
        ids = np.array(ids_for(n))
        out["rss_before_mb"] = rss_mb()
        t0 = time.perf_counter()
        for k in range(plan.n_shards):
            a, b = plan.bounds(k)
            dx.write_shard_arrays(shard_dir, k % 4, k, plan, "bench", positions=np.arange(a, b), ids=ids[a:b],
                                  embeddings=data(b - a, seed=k), windows=b - a, audio_seconds=2.0 * (b - a))
        out["seconds"] = time.perf_counter() - t0
        out["shards"] = plan.n_shards
        out["size_mb"] = sum(p.stat().st_size for p in shard_dir.iterdir()) / 2**20
    elif name == "merge":
        plan = dx.ShardPlan(n, -(-n // N_SHARDS))
        ids = np.array(ids_for(n))
        out["rss_before_mb"] = rss_mb()
        t0 = time.perf_counter()
        infos = dx.scan_shards(work / "shards", plan, "bench", ids)
        out["scan_seconds"] = time.perf_counter() - t0
        store, summary = dx.merge_shards(infos, plan, ids, work / "merged", DIM, {"synthetic": n})
        out["seconds"] = time.perf_counter() - t0
        assert summary["embedded"] == n and len(store.ids) == n
    elif name == "open":
        out["rss_before_mb"] = rss_mb()
        t0 = time.perf_counter()
        store = EmbeddingStore.open(work / "float32")
        out["open_seconds"] = time.perf_counter() - t0
        store.index()
        out["seconds"] = time.perf_counter() - t0
        out["index_seconds"] = out["seconds"] - out["open_seconds"]
    elif name.startswith("select_"):
        dtype = name.removeprefix("select_")
        rng = np.random.default_rng(1)
        store = EmbeddingStore.open(work / dtype)
        want = [store.ids[i] for i in rng.permutation(n)[: n // 10]]
        out["rss_before_mb"] = rss_mb()
        t0 = time.perf_counter()
        sel = store.select(want)
        out["seconds"] = time.perf_counter() - t0
        out["peak_rss_mb"] = peak_rss_mb()
        out["rss_anon_after_mb"], out["rss_file_after_mb"] = rss_mb("RssAnon"), rss_mb("RssFile")
        out["rows"] = len(sel)
        # spot check against the generator (rows of the store are data(n) in order)
        i = int(want[0].removeprefix("utt"))
        ref = data(n)[i] if n <= 200_000 else np.random.default_rng(0).standard_normal((i + 1, DIM), dtype=np.float32)[i]
        tol = 0 if dtype == "float32" else 2e-3 * max(1.0, float(np.abs(ref).max()))
        assert np.abs(sel[0] - ref).max() <= tol, "selected row differs from the written one"
    else:
        raise SystemExit(f"unknown step {name}")
    out.setdefault("peak_rss_mb", peak_rss_mb())
    out.setdefault("rss_anon_after_mb", rss_mb("RssAnon"))
    out.setdefault("rss_file_after_mb", rss_mb("RssFile"))
    return out


STEPS = ("write_float32", "write_float16", "write_shards", "merge", "open", "select_float32", "select_float16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100,000 rows")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--work", help="folder for the files (default: a temporary folder, removed)")
    args = ap.parse_args()
    n = args.n or (100_000 if args.quick else 1_000_000)
    if args.step:  # child process
        print(json.dumps(step(args.step, n, Path(args.work))))
        return

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="store_scale."))
    work.mkdir(parents=True, exist_ok=True)
    steps = {}
    try:
        for name in STEPS:
            proc = subprocess.run([sys.executable, __file__, "--step", name, "--n", str(n), "--work", str(work)],
                                  capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"step {name} failed:\n{proc.stderr[-3000:]}")
            steps[name] = json.loads(proc.stdout.strip().splitlines()[-1])
            r = steps[name]
            print(f"{name:15s} {r['seconds']:8.2f} s   peak RSS {r['peak_rss_mb']:7.0f} MB   (after imports "
                  f"{r['rss_after_imports_mb']:5.0f} MB, before the step {r['rss_before_mb']:6.0f} MB; after: anon "
                  f"{r['rss_anon_after_mb']:6.0f} MB, file-backed {r['rss_file_after_mb']:6.0f} MB)", flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)

    from _common import write_results

    write_results("store_scale.json" if not args.quick else "store_scale_quick.json", {
        "n": n, "dim": DIM, "merge_shards": N_SHARDS, "select_fraction": 0.1,
        "float32_store_mb": n * DIM * 4 / 2**20,
        "steps": steps,
        "notes": ("each step in a fresh process: peak_rss_mb is that process's ru_maxrss (python + numpy + the "
                  "step); rss_after_imports_mb is its RSS after imports (write_shards and merge also import "
                  "deeptalk_ser.embedding.shards), rss_before_mb just before the timed call "
                  "(the write steps hold the whole input array by then); rss_anon_after_mb / rss_file_after_mb split "
                  "the RSS at the end of the step into private memory and file-backed pages (the memory-mapped "
                  "store: pages written by the merge or read by select count in RSS but are page cache, "
                  "reclaimable). Page cache warm: the stores were just written."),
    })


if __name__ == "__main__":
    main()
