"""SVM backend choice (``classifier.backend``) and the models each backend fits.

* ``sklearn``: scikit-learn's ``SVC`` (libsvm), the reference; single-threaded, time roughly
  quadratic in the training rows; memory bounded by ``classifier.cache_size`` (MB of kernel cache).
* ``sklearnex``: the same RBF SVM problem solved by scikit-learn-intelex (oneDAL, all cores),
  fitted as one binary SVC per class pair with libsvm's one-vs-one vote (ties to the earlier
  class), because sklearnex's own multi-class SVC at the paper's C=1000 does not reproduce
  libsvm (0.588 vs 0.648 on the authors' CREMA-D arrays; its binary problems agree). Optional:
  ``pip install scikit-learn-intelex``.
* ``cuml``: RAPIDS cuML on a CUDA GPU (``pip install '.[gpu]'``); its import fails without a
  GPU, so it is imported lazily and only when CUDA is visible.
* ``nystroem``: approximate: ``classifier.n_components`` Nystroem features of the same RBF
  kernel and a linear head (``classifier.approx_head``: ``ridge``, a least-squares SVM with
  alpha = 1/(2C), or ``linear_svc``, liblinear's primal squared-hinge SVM with the same C); time
  and memory linear in the rows.
* ``auto``: cuML on a GPU, else the fastest exact CPU backend installed (sklearnex, else sklearn).

The chosen backend is recorded in every result. :func:`check_fits` says before a fit whether it
would fit in memory (and warns when an exact fit will be slow).
"""

from __future__ import annotations

from dataclasses import dataclass

import importlib.util
import itertools
import logging
import os
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from deeptalk_ser.utils.errors import ConfigError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "sklearn", "sklearnex", "cuml", "nystroem")
APPROX_HEADS = ("ridge", "linear_svc")
#: exact CPU backends, fastest first (benchmarks/results/svm_scale.json)
EXACT_CPU = ("sklearnex", "sklearn")
#: above this many training rows an exact CPU fit is warned about (quadratic time)
SLOW_EXACT_ROWS = 30_000


def cuml_available() -> bool:
    try:
        import torch

        if not torch.cuda.is_available():
            return False
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False
    return importlib.util.find_spec("cuml") is not None


def sklearnex_available() -> bool:
    return importlib.util.find_spec("sklearnex") is not None


def select_backend(preference: str = "auto") -> str:
    """The backend that fits for ``classifier.backend=preference``; refuses unknown or unavailable ones."""
    if preference not in BACKENDS:
        raise ConfigError("classifier.backend", f"must be one of {', '.join(BACKENDS)}, got {preference!r}")
    if preference in ("sklearn", "nystroem"):
        return preference
    if preference == "sklearnex":
        if not sklearnex_available():
            raise ConfigError("classifier.backend", "sklearnex, but scikit-learn-intelex is not installed "
                                                    "(pip install scikit-learn-intelex)")
        return "sklearnex"
    if cuml_available():
        return "cuml"
    if preference == "cuml":
        raise ConfigError("classifier.backend", "cuml, but cuML or a CUDA GPU is not available (pip install '.[gpu]' on a GPU machine)")
    return "sklearnex" if sklearnex_available() else "sklearn"


def resolve_gamma(gamma: float | str, X: np.ndarray) -> float:
    """scikit-learn's ``gamma="scale"`` (1 / (d var X)) / ``"auto"`` (1 / d) as a number, computed
    on the whole training set (a per-pair or Nystroem fit must not recompute it on a subset)."""
    if gamma == "scale":
        var = float(np.asarray(X, np.float64).var())
        return 1.0 / (X.shape[1] * var) if var > 0 else 1.0
    if gamma == "auto":
        return 1.0 / X.shape[1]
    return float(gamma)


class PairwiseSVC(ClassifierMixin, BaseEstimator):
    """One-vs-one RBF SVM from binary scikit-learn-intelex SVCs, voted like libsvm: pair (i, j)
    votes i when its decision says i, ties go to the earlier class (integer labels 0..k-1)."""

    def __init__(self, C: float = 1.0, gamma: float | str = "scale", cache_size: float = 200.0) -> None:
        self.C = C
        self.gamma = gamma
        self.cache_size = cache_size

    def fit(self, X: np.ndarray, y: np.ndarray) -> "PairwiseSVC":
        from sklearnex.svm import SVC

        X, y = np.asarray(X), np.asarray(y)
        self.classes_ = np.unique(y)
        gamma = resolve_gamma(self.gamma, X)
        self.pairs_: list[tuple[int, int, Any]] = []
        for i, j in itertools.combinations(range(len(self.classes_)), 2):
            rows = (y == self.classes_[i]) | (y == self.classes_[j])
            # labels 0 (class i) / 1 (class j): the binary decision is > 0 for j
            model = SVC(kernel="rbf", C=self.C, gamma=gamma, cache_size=self.cache_size)
            self.pairs_.append((i, j, model.fit(X[rows], (y[rows] == self.classes_[j]).astype(np.int64))))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        votes = np.zeros((len(X), len(self.classes_)), dtype=np.int64)
        rows = np.arange(len(X))
        for i, j, model in self.pairs_:
            d = model.decision_function(X)
            votes[rows, np.where(d < 0, i, j)] += 1  # libsvm: dec > 0 votes i, else j (sign flipped here)
        return self.classes_[votes.argmax(axis=1)]  # argmax: the first (earlier) class wins ties


@dataclass(eq=False, repr=False)
class NystroemSVM(ClassifierMixin, BaseEstimator):
    """Approximate RBF SVM: Nystroem features (float32, transformed in chunks to bound memory)
    and a linear head; linear in the training rows instead of quadratic."""

    # parameters stored by the generated ``__init__`` (see SVMClassifier); eq/repr stay scikit-learn's
    C: float = 1.0
    gamma: float | str = "scale"
    n_components: int = 1024
    head: str = "ridge"
    seed: int = 0
    chunk: int = 8192

    def _features(self, X: np.ndarray) -> np.ndarray:
        out = np.empty((len(X), self.map_.components_.shape[0]), dtype=np.float32)
        for s in range(0, len(X), self.chunk):
            out[s:s + self.chunk] = self.map_.transform(X[s:s + self.chunk])
        return out

    def fit(self, X: np.ndarray, y: np.ndarray) -> "NystroemSVM":
        from sklearn.kernel_approximation import Nystroem

        X = np.asarray(X, np.float32)
        self.gamma_ = resolve_gamma(self.gamma, X)
        self.map_ = Nystroem(kernel="rbf", gamma=self.gamma_, n_components=min(int(self.n_components), len(X)),
                             random_state=self.seed).fit(X)
        F = self._features(X)
        if self.head == "ridge":
            from sklearn.linear_model import RidgeClassifier

            self.head_ = RidgeClassifier(alpha=1.0 / (2.0 * self.C))
        else:
            from sklearn.svm import LinearSVC

            self.head_ = LinearSVC(C=self.C, dual=False, random_state=self.seed)
        self.head_.fit(F, y)
        self.classes_ = self.head_.classes_
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.head_.predict(self._features(np.asarray(X, np.float32)))


def make_svc(backend: str, C: float, gamma: float | str, seed: int, cache_size: float = 200.0,
             n_components: int = 1024, approx_head: str = "ridge") -> Any:
    """An RBF SVM (or its Nystroem approximation) with the given hyper-parameters from the chosen backend."""
    if backend == "cuml":
        from cuml.svm import SVC  # lazy: import fails without a GPU

        return SVC(kernel="rbf", C=C, gamma=gamma, cache_size=cache_size)
    if backend == "sklearnex":
        return PairwiseSVC(C=C, gamma=gamma, cache_size=cache_size)
    if backend == "nystroem":
        return NystroemSVM(C=C, gamma=gamma, n_components=n_components, head=approx_head, seed=seed)
    from sklearn.svm import SVC

    return SVC(kernel="rbf", C=C, gamma=gamma, random_state=seed, cache_size=cache_size)


# ------------------------------------------------------------------------------ memory estimate


def available_memory_bytes() -> int | None:
    """MemAvailable of this machine (Linux), None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def estimate_fit_bytes(backend: str, n_rows: int, n_features: int, cache_size: float = 200.0,
                       n_components: int = 1024, approx_head: str = "ridge") -> int:
    """Peak host memory of one fit, roughly: the float64 training copy and support vectors plus
    the kernel cache (exact backends), or the float32 Nystroem features with the head's working
    copies (``nystroem``; liblinear's ``linear_svc`` adds its own float64 copy). On the high side
    of benchmarks/results/svm_scale.json's measurements."""
    mb = 1 << 20
    if backend == "nystroem":
        k = min(int(n_components), n_rows)
        head = n_rows * k * 16 if approx_head == "linear_svc" else 0
        return int(3 * n_rows * k * 4 + head + 4 * k * k * 8 + 8192 * k * 8 + 2 * n_rows * n_features * 4)
    if backend == "cuml":  # the kernel cache is on the GPU; the host holds the inputs
        return int(2 * n_rows * n_features * 8)
    return int(3 * n_rows * n_features * 8 + cache_size * mb)


def check_fits(backend: str, n_rows: int, n_features: int, cache_size: float = 200.0, n_components: int = 1024,
               available: int | None = None, approx_head: str = "ridge") -> int:
    """Refuse (ConfigError) a fit whose estimated memory exceeds 80 % of what is available; warn
    when an exact CPU fit of this size will be slow. Returns the estimate in bytes."""
    need = estimate_fit_bytes(backend, n_rows, n_features, cache_size, n_components, approx_head)
    avail = available_memory_bytes() if available is None else available
    gib = 1 << 30
    if avail is not None and need > 0.8 * avail:
        hint = ("lower classifier.n_components" if backend == "nystroem"
                else "lower classifier.cache_size, or classifier.backend=nystroem")
        raise ConfigError("classifier.backend", f"{backend} on {n_rows} x {n_features} rows needs about "
                                                f"{need / gib:.1f} GiB, {avail / gib:.1f} GiB available: {hint}")
    if backend in EXACT_CPU and n_rows > SLOW_EXACT_ROWS:
        log.warning("exact RBF SVM (%s) on %d training rows: time grows about quadratically (see "
                    "benchmarks/results/svm_scale.json); classifier.backend=nystroem is linear in the rows",
                    backend, n_rows)
    return need
