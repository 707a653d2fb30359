"""SVM heads at scale: fit + predict time and peak memory of the flat SVM and the Sad-First head
per ``classifier.backend``, on synthetic 256-d clustered embeddings, and the accuracy each
backend gives on the real tasks (EmoDB leave-one-speaker-out, the authors' CREMA-D arrays).

Scale: every case runs in its own child process (``--case``), so its peak memory is its own
``ru_maxrss``; a case over ``--limit`` seconds is killed and recorded as timed out, and an exact
backend whose next size is predicted (quadratic extrapolation from its last size) to exceed the
limit is recorded as not run, with the prediction. The synthetic data imitate the authors'
DeepTalk CREMA-D arrays: 4 classes, 256-d, speaker sub-clusters, L2 norm 0.94, class offsets
chosen so that the exact SVM (C=1000, gamma=0.1) scores about 0.70 with about 70 % of the rows
as support vectors (CREMA-D: 0.648, 66 %). The test set is 2,000 rows at every size.
The Nystroem + linear_svc head is measured up to 20k rows only (it is linear in the rows, and
slow at C=1000: extrapolate).

Accuracy: ``evaluate.py`` multiruns over ``classifier.backend`` on the stored embeddings
(skipped, with the reason, when ``../shared/data`` is absent).

    python benchmarks/svm_scale.py                 # -> benchmarks/results/svm_scale.json
    python benchmarks/svm_scale.py --quick         # 5k and 20k only, no accuracy part
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

THREADS = "2"
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, THREADS)

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

D, K, N_TEST = 256, 4, 2000
CLASSES = np.array(["angry", "happy", "neutral", "sad"], dtype=object)
C, GAMMA, CACHE_MB, N_COMPONENTS = 1000.0, 0.1, 200.0, 1024
#: (backend, approx_head) in the order they run; exact ones last (slowest)
BACKENDS = [("nystroem", "ridge"), ("nystroem", "linear_svc"), ("sklearnex", None), ("sklearn", None)]
MAX_ROWS = {"linear_svc": 20000}
#: how time grows with the rows, for the "predicted over the limit" rule
GROWTH = {"sklearn": 2.0, "sklearnex": 2.0, "cuml": 2.0, "nystroem": 1.0}
EXACT = {"sklearn", "sklearnex", "cuml"}


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of 4-class, 256-d clustered embeddings (fixed centres, fresh noise per seed)."""
    centres = np.random.default_rng(1234)
    class_c, speaker_c = centres.normal(size=(K, D)), centres.normal(size=(200, D))
    rng = np.random.default_rng(seed)
    y, spk = rng.integers(0, K, n), rng.integers(0, len(speaker_c), n)
    X = speaker_c[spk] + 0.12 * class_c[y] + rng.normal(size=(n, D))
    X = 0.94 * X / np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), CLASSES[y]


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakSampler:
    """The highest RSS of this process while the block runs (sampled every 10 ms): ru_maxrss
    alone would also count the data generation's temporaries before the fit."""

    def __init__(self) -> None:
        import threading

        self.peak, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb())
            self._stop.wait(0.01)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def run_case(head: str, backend: str, approx_head: str | None, n: int, cache_mb: float) -> dict[str, Any]:
    """One measurement, in this (child) process."""
    from deeptalk_ser.evaluation.classifiers import SadFirstClassifier, SVMClassifier

    X, y = synthetic(n, seed=1)
    Xte, yte = synthetic(N_TEST, seed=2)
    cls = SVMClassifier if head == "flat" else SadFirstClassifier
    clf = cls(C=C, gamma=GAMMA, backend=backend, cache_size=cache_mb, n_components=N_COMPONENTS,
              approx_head=approx_head or "ridge")
    clf.check_params()
    estimate = clf.check_fits(n, D)
    before = _rss_mb()
    with PeakSampler() as sampler:
        t0 = time.perf_counter()
        clf.fit(X, y)
        t1 = time.perf_counter()
        pred = clf.predict(Xte)
        t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"fit_s": round(t1 - t0, 2), "predict_s": round(t2 - t1, 2), "total_s": round(t2 - t0, 2),
            "accuracy": round(float(np.mean(pred == yte)), 4), "peak_rss_mb": round(peak),
            "rss_before_fit_mb": round(before), "fit_peak_over_data_mb": round(sampler.peak - before),
            "estimated_fit_mb": round(estimate / 2**20), "backend": clf.backend_}


def child(args: list[str], limit: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--case", *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        return {"status": "timed out", "limit_s": limit, "wall_s": round(time.perf_counter() - t0, 1)}
    if proc.returncode != 0:
        return {"status": "failed", "error": err.strip().splitlines()[-1] if err.strip() else f"rc {proc.returncode}"}
    return {"status": "ok", **json.loads(out.strip().splitlines()[-1])}


def scale(sizes: list[int], limit: float, budget: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for backend, approx in BACKENDS:
        for head in ("flat", "sad_first"):
            last: tuple[int, float] | None = None
            stop = None
            for n in sizes:
                case = {"head": head, "backend": backend, "approx_head": approx, "n_train": n, "n_test": N_TEST,
                        "cache_size_mb": CACHE_MB if backend in EXACT else None,
                        "n_components": N_COMPONENTS if backend == "nystroem" else None}
                if stop:
                    rows.append({**case, "status": "not run", "reason": stop})
                    continue
                if approx and n > MAX_ROWS.get(approx, n):
                    rows.append({**case, "status": "not run", "reason": f"{approx} measured up to {MAX_ROWS[approx]} rows"})
                    continue
                if last:
                    predicted = last[1] * (n / last[0]) ** GROWTH[backend]
                    if predicted > limit:
                        stop = (f"predicted {predicted:.0f} s (time ~ n^{GROWTH[backend]:g} from n={last[0]}) "
                                f"> limit {limit:.0f} s")
                        rows.append({**case, "status": "not run", "reason": stop})
                        continue
                if time.perf_counter() - t_start > budget:
                    rows.append({**case, "status": "not run", "reason": f"benchmark budget {budget:.0f} s spent"})
                    continue
                load = os.getloadavg()[0]
                res = child([head, backend, approx or "-", str(n), str(CACHE_MB)], limit)
                row = {**case, **res, "load_avg_1min_before": round(load, 2)}
                rows.append(row)
                print(json.dumps(row), flush=True)
                if res["status"] == "ok":
                    last = (n, res["total_s"])
                else:
                    stop = f"n={n} {res['status']}"
    return rows


def _sweep(tag: str, overrides: list[str], backends: list[str], tmp: Path) -> list[dict[str, Any]]:
    """One evaluate.py multirun over the backends; the rows of its summary.csv."""
    sweep = tmp / tag
    cmd = [sys.executable, str(ROOT / "evaluate.py"), "-m", *overrides, "classifier=svm,hierarchical",
           f"classifier.backend={','.join(backends)}", "logger=none", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "HYDRA_FULL_ERROR": "1", "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return [{"data": tag, "status": "failed", "error": proc.stderr.strip().splitlines()[-1:]}]
    rows = []
    for r in csv.DictReader((sweep / "summary.csv").open()):
        cfg = json.loads((sweep / r["run"] / "results.json").read_text())["classifier_config"]
        rows.append({"setting": tag, "command": " ".join(["python evaluate.py -m", *overrides, "classifier=svm,hierarchical", f"classifier.backend={','.join(backends)}"]),
                     "classifier": r["classifier"], "backend": r["backend"], "task": r["task"],
                     "approx_head": cfg.get("approx_head") if r["backend"] == "nystroem" else None,
                     "n_components": cfg.get("n_components") if r["backend"] == "nystroem" else None,
                     **{k: round(float(r[k]), 4) for k in ("wa", "ua", "macro_f1") if r.get(k)}})
    print(f"{tag}: {len(rows)} runs in {time.perf_counter() - t0:.0f} s", flush=True)
    return rows


def accuracy(tmp: Path) -> dict[str, Any]:
    from _common import SHARED_DATA

    if not (SHARED_DATA / "emodb").is_dir():
        return {"skipped": f"{SHARED_DATA} absent"}
    exact = ["sklearn", "sklearnex"] if _has_sklearnex() else ["sklearn"]
    rows = []
    rows += _sweep("emodb_ge2e", [], [*exact, "nystroem"], tmp)
    rows += _sweep("emodb_egemaps", ["experiment=egemaps_baseline"], [*exact, "nystroem"], tmp)
    rows += _sweep("crema_d_arrays", ["data=deeptalkemotions_crema_d"], [*exact, "nystroem"], tmp)
    rows += _sweep("crema_d_arrays_linear_svc", ["data=deeptalkemotions_crema_d", "classifier.approx_head=linear_svc"],
                   ["nystroem"], tmp)
    return {"rows": rows}


def _has_sklearnex() -> bool:
    from deeptalk_ser.evaluation.classifiers.backend import sklearnex_available

    return sklearnex_available()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", nargs=5, metavar=("HEAD", "BACKEND", "APPROX", "N", "CACHE_MB"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--limit", type=float, default=240.0, help="seconds per case")
    ap.add_argument("--budget", type=float, default=13 * 60.0, help="seconds for all scale cases")
    ap.add_argument("--sizes", type=int, nargs="*", default=None)
    args = ap.parse_args()
    if args.case:
        head, backend, approx, n, cache_mb = args.case
        print(json.dumps(run_case(head, backend, None if approx == "-" else approx, int(n), float(cache_mb))))
        return
    import tempfile

    from _common import write_results

    sizes = args.sizes or ([5000, 20000] if args.quick else [5000, 20000, 50000, 100000])
    t0 = time.perf_counter()
    scale_rows = scale(sizes, args.limit, args.budget)
    with tempfile.TemporaryDirectory(prefix="svm_scale_") as tmp:
        acc = {"skipped": "--quick"} if args.quick else accuracy(Path(tmp))
    write_results("svm_scale.json", {
        "command": "python benchmarks/svm_scale.py" + (" --quick" if args.quick else ""),
        "what": "fit + predict (2,000 test rows) time and peak RSS per case, each in its own process; "
                "fit_peak_over_data_mb: the highest RSS during fit+predict minus the RSS just before the fit "
                "(data and imports); peak_rss_mb: the process's ru_maxrss",
        "data": f"synthetic {D}-d, {K} classes, 200 speaker sub-clusters, L2 norm 0.94 (CREMA-D-like)",
        "svm": {"C": C, "gamma": GAMMA, "cache_size_mb": CACHE_MB, "n_components": N_COMPONENTS},
        "threads": {"OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"],
                    "OPENBLAS_NUM_THREADS": os.environ["OPENBLAS_NUM_THREADS"],
                    "MKL_NUM_THREADS": os.environ["MKL_NUM_THREADS"],
                    "note": "sklearn SVC (libsvm) is single-threaded; sklearnex (oneDAL/TBB) and the Nystroem "
                            "features and heads (BLAS) use the 2 cores"},
        "contention": "the machine's 2 cores were shared with other work while this ran (load_avg_1min_before "
                      "per case); times are upper bounds for an idle machine",
        "limit_s_per_case": args.limit, "budget_s_scale": args.budget,
        "scale": scale_rows, "accuracy": acc, "wall_s": round(time.perf_counter() - t0, 1),
        "cuml": "not measured: no GPU on this machine",
    })


if __name__ == "__main__":
    main()
