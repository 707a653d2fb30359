"""One prepared GPU check (under 9 minutes on one GPU), writing one JSON.

Parts (each recorded even if another fails; the JSON is rewritten after every part, so a run
cut short keeps what it measured):

- ``svm``: cuML vs scikit-learn RBF SVMs on the authors' CREMA-D arrays (accuracy of each,
  prediction agreement), and fit times on synthetic 256-d rows (cuML at 20k and 100k rows;
  scikit-learn, single-threaded libsvm, only at the smallest size).
- ``training``: DeepTalk optimiser steps (GE2E, 200-frame crops, fast DeepVOX) in fp32 and under
  bf16 autocast (what ``trainer=gpu``'s ``bf16-mixed`` runs), at the reference batch 32 x 10
  and at the largest P x 10 that fits (doubling P uncompiled), then both with ``torch.compile``;
  utterances/s, GFLOP/s and ``fraction_of_peak`` against the device's fp32 / bf16 matmul peak.
- ``extraction``: windowed DeepTalk extraction (1 s / 10 ms) with the shipped checkpoint, fp32
  vs ``encoder.bf16=true``, with the max abs difference of the embeddings.

Inputs travel with the working tree: ``--prepare`` copies the CREMA-D arrays (4 MB) and the
front end's output of 40 EmoDB utterances (int16) into ``cache/gpu_inputs/`` (git-ignored, about
6 MB; name it in the device tool's ``carry``). Then, on the GPU machine::

    python benchmarks/gpu_check.py --prepare                      # here, once (needs ../shared/data)
    python benchmarks/gpu_check.py --out $OUT/gpu_check.json      # there (carry cache/gpu_inputs)
    python benchmarks/gpu_check.py --dry-run --out x.json         # every part on CPU at toy sizes

Without prepared inputs the CREMA-D part reads ``$DEEPTALK_DATA_DIR`` (default ../shared/data)
and, failing that, uses synthetic arrays (recorded as such); extraction falls back to synthetic
speech the same way.
"""

from __future__ import annotations

import argparse
import shutil
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from _common import SHARED_DATA, achieved, count_flops, machine, matmul_peak, speech_like
from deeptalk_ser.utils.io import write_json_atomic

INPUTS = Path(__file__).resolve().parents[1] / "cache" / "gpu_inputs"  # cache/ is git-ignored
SHIPPED = Path(__file__).resolve().parents[1] / "src" / "deeptalk_ser" / "embedding" / "checkpoints" / "deeptalk_speechocean762.pt"
CREMA = ("all_train_x.npy", "all_train_y.npy", "all_test_x.npy", "all_test_y.npy")
FULL = {"svm_rows": (20_000, 100_000), "sklearn_rows": 20_000, "P": 32, "K": 10, "crop": 200, "max_P": 512,
        "steps": 5, "utterances": 40, "compile": True, "compile_largest": True}
DRY = {"svm_rows": (300, 600), "sklearn_rows": 300, "P": 2, "K": 3, "crop": 64, "max_P": 4,
       "steps": 1, "utterances": 2, "compile": True, "compile_largest": False}


def prepare(out: Path, n_utterances: int = 40) -> None:
    """Copy the CREMA-D arrays and n EmoDB utterances (after the DeepTalk front end) into ``out``."""
    from deeptalk_ser.data.audio.io import load_audio
    from deeptalk_ser.embedding.encoders.deeptalk import deeptalk_frontend

    out.mkdir(parents=True, exist_ok=True)
    for name in CREMA:
        shutil.copyfile(SHARED_DATA / "deeptalkemotions_crema_d" / name, out / name)
    front = deeptalk_frontend()
    files = sorted((SHARED_DATA / "emodb" / "wav").glob("*.wav"))
    files = files[:: max(1, len(files) // n_utterances)][:n_utterances]
    wavs = [front(*load_audio(f)) for f in files]
    np.savez(out / "emodb_frontend.npz", **{f.stem: np.round(np.clip(w, -1, 1) * 32767).astype(np.int16)
                                            for f, w in zip(files, wavs)})
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"prepared {out} ({size / 2**20:.1f} MiB): CREMA-D arrays + {len(wavs)} EmoDB utterances")


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any], device: str, repeats: int = 1) -> float:
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / repeats


# -- SVM ----------------------------------------------------------------------------------------


def _crema_arrays(inputs: Path, dry: bool) -> tuple[str, list[np.ndarray]]:
    for where in (inputs, SHARED_DATA / "deeptalkemotions_crema_d"):
        if all((where / n).is_file() for n in CREMA):
            arrays = [np.load(where / n) for n in CREMA]
            if dry:  # toy size: a slice of each split
                arrays = [a[:: max(1, len(a) // 300)] for a in arrays]  # every class
            return str(where), arrays
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 600)
    x = rng.normal(size=(600, 256)).astype(np.float32) + y[:, None] * 0.3
    return "synthetic (no CREMA-D arrays found)", [x[:400], y[:400], x[400:], y[400:]]


def _blobs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 6, n)
    centres = rng.normal(size=(6, 256))
    return (centres[y] + 2.0 * rng.normal(size=(n, 256))).astype(np.float32), y


def svm_part(cfg: dict, inputs: Path, device: str) -> dict:
    from deeptalk_ser.evaluation.classifiers.backend import cuml_available, make_svc

    source, (xtr, ytr, xte, yte) = _crema_arrays(inputs, cfg is DRY)
    xtr, xte = xtr.reshape(len(xtr), -1).astype(np.float32), xte.reshape(len(xte), -1).astype(np.float32)
    ytr, yte = np.asarray(ytr).ravel(), np.asarray(yte).ravel()
    backends = ["sklearn"] + (["cuml"] if cuml_available() else [])
    res: dict = {"crema_d": {"source": source, "train_rows": len(xtr), "test_rows": len(xte), "features": xtr.shape[1]},
                 "cuml_available": "cuml" in backends}
    preds = {}
    for b in backends:
        clf = make_svc(b, C=1.0, gamma="scale", seed=0)
        t = _timed(lambda: clf.fit(xtr, ytr), "cpu")
        preds[b] = np.asarray(clf.predict(xte))
        res["crema_d"][b] = {"fit_s": t, "accuracy": float((preds[b] == yte).mean())}
    if "cuml" in preds:
        res["crema_d"]["prediction_agreement"] = float((preds["cuml"] == preds["sklearn"]).mean())
    res["fit_seconds"] = {}
    for n in cfg["svm_rows"]:
        x, y = _blobs(n)
        row = {}
        for b in backends:
            if b == "sklearn" and n > cfg["sklearn_rows"]:
                row[b] = "skipped (single-threaded libsvm: see benchmarks/results/svm_scale.json)"
                continue
            clf = make_svc(b, C=1.0, gamma="scale", seed=0)
            row[b] = _timed(lambda: clf.fit(x, y), "cpu")
        res["fit_seconds"][str(n)] = row
    return res


# -- training -----------------------------------------------------------------------------------


def _train_step(P: int, K: int, crop: int, device: str, bf16: bool, compile_: bool) -> Callable[[], None]:
    from _common import optimizer_step
    from deeptalk_ser.training.losses import GE2ELoss
    from deeptalk_ser.training.module import SpeakerEncoderModule

    module = SpeakerEncoderModule(loss=GE2ELoss(), optimizer=None, scheduler=None).to(device)
    if compile_:
        module.net.compile()
    frames = torch.randn(P * K, crop, 160, device=device)
    labels = torch.arange(P, device=device).repeat_interleave(K)
    return optimizer_step(module, frames, labels, bf16=bf16)


def _measure_training(P: int, K: int, crop: int, device: str, bf16: bool, compile_: bool, steps: int,
                      peaks: dict) -> dict:
    step = _train_step(P, K, crop, device, bf16, compile_)
    t0 = time.perf_counter()
    step()  # warm-up (and compilation)
    _sync(device)
    first = time.perf_counter() - t0
    s = _timed(step, device, steps)
    flops = count_flops(step) if not compile_ else None
    row = {"P": P, "K": K, "crop_frames": crop, "bf16": bf16, "compile": compile_, "first_step_s": first,
           "s_per_step": s, "utterances_per_s": P * K / s}
    if flops:
        row.update(flops_per_step=flops, **achieved(flops, s, peaks["bf16" if bf16 else "fp32"]))
    return row


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def training_part(cfg: dict, device: str, peaks: dict, skip_compile: bool, deadline: float) -> dict:
    """Per precision: the reference batch, the largest P x K that fits (doubling P, uncompiled),
    then both batches compiled; measurements past ``deadline`` are skipped (recorded)."""
    rows: dict = {}
    K, crop = cfg["K"], cfg["crop"]
    compiles = (False, True) if cfg["compile"] and not skip_compile else (False,)
    for bf16 in (False, True):
        prec = "bf16" if bf16 else "fp32"
        P, largest = cfg["P"] * 2, None
        rows[f"reference_{prec}"] = _measure_training(cfg["P"], K, crop, device, bf16, False, cfg["steps"], peaks)
        while P <= cfg["max_P"] and time.perf_counter() < deadline:
            try:
                rows[f"largest_{prec}"] = _measure_training(P, K, crop, device, bf16, False, cfg["steps"], peaks)
                largest = P
            except Exception as exc:  # noqa: BLE001 -- only out-of-memory ends the search quietly
                if not _is_oom(exc):
                    raise
                break
            finally:
                if device == "cuda":
                    torch.cuda.empty_cache()
            P *= 2
        for which, p in (("reference", cfg["P"]), ("largest", largest)):
            if True not in compiles or p is None or (which == "largest" and not cfg["compile_largest"]):
                continue
            key = f"{which}_{prec}_compile"
            rows[key] = (_measure_training(p, K, crop, device, bf16, True, cfg["steps"], peaks)
                         if time.perf_counter() < deadline else "skipped (time budget)")
        print(f"training {prec}: reference {rows[f'reference_{prec}']['utterances_per_s']:.1f} utt/s, "
              f"largest P {largest}", flush=True)
    return rows


# -- extraction ---------------------------------------------------------------------------------


def _utterances(inputs: Path, n: int) -> tuple[str, list[np.ndarray]]:
    path = inputs / "emodb_frontend.npz"
    if path.is_file():
        with np.load(path) as z:
            return str(path), [z[k].astype(np.float32) / 32767 for k in sorted(z.files)[:n]]
    return "synthetic speech (no prepared EmoDB)", [speech_like(3.0, 8000, f0=100.0 + 20 * i) for i in range(n)]


def extraction_part(cfg: dict, inputs: Path, device: str) -> dict:
    from deeptalk_ser.embedding.encoders.deeptalk import DeepTalkEncoder

    source, wavs = _utterances(inputs, cfg["utterances"])
    res: dict = {"source": source, "utterances": len(wavs), "audio_seconds": sum(map(len, wavs)) / 8000}
    out = {}
    for bf16 in (False, True):
        enc = DeepTalkEncoder(checkpoint=str(SHIPPED), device=device, bf16=bf16)
        enc.embed_windowed(wavs[0], 8000, 80)  # warm-up
        emb: list[np.ndarray] = []
        s = _timed(lambda: emb.extend(enc.embed_windowed(w, 8000, 80) for w in wavs), device)
        out[bf16] = emb
        n_win = sum(len(e) for e in emb)
        res["bf16" if bf16 else "fp32"] = {"seconds": s, "windows": n_win, "windows_per_s": n_win / s,
                                           "audio_s_per_s": res["audio_seconds"] / s, "bf16_active": enc.bf16}
    diffs = [np.nanmax(np.abs(a - b)) for a, b in zip(out[False], out[True]) if len(a)]
    res["max_abs_diff_bf16_vs_fp32"] = float(max(diffs)) if diffs else None
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="every part on CPU at toy sizes")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "gpu_check.json")
    ap.add_argument("--inputs", type=Path, default=INPUTS)
    ap.add_argument("--prepare", action="store_true", help="write the inputs folder from ../shared/data, then exit")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="start no training measurement after this many seconds (the GPU check must end < 9 min)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["svm", "training", "extraction", "compile"])
    args = ap.parse_args()
    if args.prepare:
        prepare(args.inputs)
        return
    device = "cpu" if args.dry_run or not torch.cuda.is_available() else "cuda"
    if device == "cpu" and not args.dry_run:
        print("no CUDA device: running at full size on CPU will be slow; use --dry-run for a check")
    cfg = DRY if args.dry_run else FULL
    n = 256 if args.dry_run else 4096
    peaks = {"fp32": matmul_peak(n, device=device),
             "bf16": matmul_peak(n, device=device, dtype=torch.bfloat16)}
    results: dict[str, Any] = {"dry_run": args.dry_run, "device": device, "sizes": cfg, "matmul_peak": peaks,
                               "machine": machine()}
    start = time.perf_counter()
    parts = {"svm": lambda: svm_part(cfg, args.inputs, device),
             "extraction": lambda: extraction_part(cfg, args.inputs, device),
             "training": lambda: training_part(cfg, device, peaks, "compile" in args.skip,
                                               start + args.budget_s)}
    for name, part in parts.items():
        if name in args.skip:
            results[name] = "skipped (--skip)"
            continue
        t0 = time.perf_counter()
        try:
            results[name] = part()
        except Exception as exc:  # noqa: BLE001 -- one failing part must not lose the others' figures
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        results[f"{name}_wall_s"] = time.perf_counter() - t0
        results["wall_s"] = time.perf_counter() - start
        write_json_atomic(args.out, results)
        print(f"{name}: {results[f'{name}_wall_s']:.1f} s -> {args.out}", flush=True)
    results["short_training_run"] = "not included (issue 24 item 4 'if time is left')"
    write_json_atomic(args.out, results)
    failed = [k for k in parts if isinstance(results.get(k), dict) and "error" in results[k]]
    if failed:
        raise SystemExit(f"gpu_check: part(s) failed: {', '.join(failed)} (see {args.out})")


if __name__ == "__main__":
    main()
