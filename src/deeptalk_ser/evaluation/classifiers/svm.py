"""The paper's flat classifier: an RBF SVM (C=1000, gamma=0.1 by default, no scaling).

Options: per-feature standardisation fitted on the training fold only (needed for
hand-crafted features such as eGeMAPS; scikit-learn's ``StandardScaler`` in a ``Pipeline``
before the SVC), and the paper's class balancing by random under-sampling of the training
fold to the smallest class. With ``blocks`` (set by ``encoder=fusion``) the pipeline starts
with a :class:`~deeptalk_ser.evaluation.classifiers.fusion.BlockScaler`: each encoder's block of
the fused features scaled to unit total variance on the training fold.

A scikit-learn estimator (``get_params``, ``clone``, ``cross_val_predict`` work): ``__init__``
only stores its parameters; what ``fit`` derives ends in ``_``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from deeptalk_ser.evaluation.classifiers.backend import APPROX_HEADS, check_fits, make_svc, select_backend
from deeptalk_ser.evaluation.classifiers.fusion import scaled_pipeline
from deeptalk_ser.utils.errors import ConfigError


def undersample(y: np.ndarray, seed: int) -> np.ndarray:
    """Indices that keep an equal, randomly chosen number of rows of every class."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    n = counts.min()
    keep = [rng.choice(np.flatnonzero(y == c), size=n, replace=False) for c in classes]
    return np.sort(np.concatenate(keep))


@dataclass(eq=False, repr=False)
class SVMClassifier(ClassifierMixin, BaseEstimator):
    """RBF SVM on float32 features with string labels. ``class_order``: libsvm breaks one-vs-one
    vote ties in favour of the earlier class, so the order (listed classes first, the rest
    sorted) can move accuracy by a few tenths of a point; it is explicit for exact reproduction.
    ``backend`` is the preference as given; :attr:`resolved_backend` is the library used
    (``auto``, ``sklearn``, ``sklearnex``, ``cuml``, ``nystroem``: see :mod:`.backend`).
    ``cache_size``: MB of kernel cache of the exact backends (scikit-learn's default, 200);
    ``n_components`` / ``approx_head``: the ``nystroem`` backend's feature count and linear head;
    ``blocks``: the widths of fused encoder blocks (``encoder=fusion``), scaled per training fold."""

    #: trained on the task's labels (not the fine ones, see SadFirstClassifier)
    uses_fine_labels = False
    #: what ``tuning.enabled`` searches unless ``tuning.grid`` is given
    default_grid: ClassVar[dict[str, list[Any]]] = {"C": [1.0, 10.0, 100.0, 1000.0], "gamma": ["scale", 0.01, 0.1, 1.0]}

    # scikit-learn reads the parameters from the generated ``__init__``'s signature, which only stores
    # them (as it requires); eq/repr stay scikit-learn's (estimators are hashable, printed as usual)
    C: float = 1000.0
    gamma: float | str = 0.1
    standardize: bool = False
    balance: bool = False
    backend: str = "auto"
    seed: int = 0
    name: str = "svm"
    class_order: Sequence[str] | None = None
    cache_size: float = 200.0
    n_components: int = 1024
    approx_head: str = "ridge"
    blocks: Sequence[int] | None = None

    @property
    def resolved_backend(self) -> str:
        """The library that fits (``sklearn`` or ``cuml``), recorded in results."""
        return select_backend(self.backend)

    def check_params(self) -> "SVMClassifier":
        """Refuse values no SVM can fit with (``C=-1``, ``gamma=abc``) before anything is extracted;
        scikit-learn itself only checks them in ``fit``, after the whole extraction."""
        from sklearn.svm import SVC

        for name in ("C", "gamma"):
            try:
                SVC(**{name: getattr(self, name)})._validate_params()
            except ValueError as exc:  # sklearn's InvalidParameterError names the allowed range
                raise ConfigError(f"classifier.{name}", str(exc).replace(" of SVC", "")) from None
        if not isinstance(self.cache_size, (int, float)) or isinstance(self.cache_size, bool) or self.cache_size <= 0:
            raise ConfigError("classifier.cache_size", f"must be a positive number of MB, got {self.cache_size!r}")
        if not isinstance(self.n_components, int) or isinstance(self.n_components, bool) or self.n_components < 1:
            raise ConfigError("classifier.n_components", f"must be a positive integer, got {self.n_components!r}")
        if self.approx_head not in APPROX_HEADS:
            raise ConfigError("classifier.approx_head", f"must be one of {', '.join(APPROX_HEADS)}, got {self.approx_head!r}")
        select_backend(self.backend)
        return self

    def check_fits(self, n_rows: int, n_features: int) -> int:
        """Refuse, before a fit starts, one that would not fit in memory (ConfigError naming the
        key to change); returns the estimated bytes. ``balance`` only ever lowers ``n_rows``."""
        return check_fits(self.resolved_backend, n_rows, n_features, self.cache_size, self.n_components,
                          approx_head=self.approx_head)

    def _make_model(self, backend: str) -> Any:
        svc = make_svc(backend, self.C, self.gamma, self.seed, cache_size=self.cache_size,
                       n_components=self.n_components, approx_head=self.approx_head)
        return scaled_pipeline(svc, self.blocks, self.standardize)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "SVMClassifier":
        X, y = np.asarray(X, np.float32), np.asarray(y, dtype=object)
        if len(np.unique(y)) < 2:
            raise ValueError(f"an SVM needs at least 2 classes in training, got {np.unique(y).tolist()}")
        if self.balance:
            keep = undersample(y, self.seed)
            X, y = X[keep], y[keep]
        present = set(y)
        order = [c for c in (self.class_order or []) if c in present]
        self.classes_ = np.array(order + sorted(present - set(order)), dtype=object)
        lookup = {c: i for i, c in enumerate(self.classes_)}
        codes = np.fromiter((lookup[c] for c in y), dtype=np.int64, count=len(y))  # both backends get integer labels
        self.backend_ = self.resolved_backend
        check_fits(self.backend_, len(y), X.shape[1], self.cache_size, self.n_components, approx_head=self.approx_head)
        self.model_ = self._make_model(self.backend_).fit(X, codes)
        self.n_train_ = len(y)
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        codes = np.asarray(self.model_.predict(np.asarray(X, np.float32)))
        return self.classes_[codes.astype(int)]

    def describe(self) -> dict:
        return {"name": self.name, "C": self.C, "gamma": self.gamma, "standardize": self.standardize,
                "balance": self.balance, "backend": self.resolved_backend,
                "class_order": list(self.class_order) if self.class_order else None,
                **({"blocks": list(self.blocks)} if self.blocks else {}),
                **({"n_components": self.n_components, "approx_head": self.approx_head}
                   if self.resolved_backend == "nystroem" else {})}
