"""The paper's flat classifier: an RBF SVM (C=1000, gamma=0.1 by default, no scaling).

Options: per-feature standardisation fitted on the training fold only (needed for
hand-crafted features such as eGeMAPS), and the paper's class balancing by random
under-sampling of the training fold to the smallest class.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from deeptalk_ser.evaluation.classifiers.backend import make_svc, select_backend


def undersample(y: np.ndarray, seed: int) -> np.ndarray:
    """Indices that keep an equal, randomly chosen number of rows of every class."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    n = counts.min()
    keep = [rng.choice(np.flatnonzero(y == c), size=n, replace=False) for c in classes]
    return np.sort(np.concatenate(keep))


class SVMClassifier:
    uses_fine_labels = False

    def __init__(self, C: float = 1000.0, gamma: float | str = 0.1, standardize: bool = False,
                 balance: bool = False, backend: str = "auto", seed: int = 0, name: str = "svm",
                 class_order: Sequence[str] | None = None) -> None:
        self.name = name
        # libsvm breaks one-vs-one vote ties in favour of the earlier class, so the class order
        # can move accuracy by a few tenths of a point; it is explicit for exact reproduction.
        self.class_order = list(class_order) if class_order else None
        self.C, self.gamma, self.standardize, self.balance, self.seed = C, gamma, standardize, balance, seed
        self.backend = select_backend(backend)
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None
        self._svc: Any = None
        self.n_train: int = 0

    def _scale(self, X: np.ndarray) -> np.ndarray:
        if self._mean is None:
            return X
        return (X - self._mean) / self._std

    def fit(self, X: np.ndarray, y: np.ndarray) -> "SVMClassifier":
        X, y = np.asarray(X, np.float32), np.asarray(y, dtype=object)
        if len(np.unique(y)) < 2:
            raise ValueError(f"an SVM needs at least 2 classes in training, got {np.unique(y).tolist()}")
        if self.balance:
            keep = undersample(y, self.seed)
            X, y = X[keep], y[keep]
        if self.standardize:
            self._mean, std = X.mean(axis=0), X.std(axis=0)
            self._std = np.where(std > 0, std, 1.0).astype(np.float32)
        present = set(y)
        order = [c for c in (self.class_order or []) if c in present]
        self.classes_ = np.array(order + sorted(present - set(order)), dtype=object)
        lookup = {c: i for i, c in enumerate(self.classes_)}
        codes = np.fromiter((lookup[c] for c in y), dtype=np.int64, count=len(y))  # both backends get integer labels
        self._svc = make_svc(self.backend, self.C, self.gamma, self.seed).fit(self._scale(X), codes)
        self.n_train = len(y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        codes = np.asarray(self._svc.predict(self._scale(np.asarray(X, np.float32))))
        return self.classes_[codes.astype(int)]

    def describe(self) -> dict:
        return {"name": self.name, "C": self.C, "gamma": self.gamma, "standardize": self.standardize,
                "balance": self.balance, "backend": self.backend, "class_order": self.class_order}
