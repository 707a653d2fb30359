"""The paper's Sad-First hierarchical head, scored as a true end-to-end classifier.

Stage 1: ``first_class`` (sad) vs the rest. Stage 2: the remaining classes, trained on the
non-``first_class`` rows only. Every test row gets exactly one final label: ``first_class``
if stage 1 says so, else stage 2's label. (The paper's code concatenated the two stages'
predictions into one score, which is not a 4-class score; see docs/deeptalk.md section 5.)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from deeptalk_ser.evaluation.classifiers.svm import SVMClassifier

REST = "__rest__"


class SadFirstClassifier(ClassifierMixin, BaseEstimator):
    """Two :class:`SVMClassifier` stages with the same SVM parameters (listed explicitly, as
    scikit-learn's ``get_params`` needs); ``fit`` builds them as ``stage1_`` and ``stage2_``."""

    #: trained on the fine (4 ER) labels; the task maps its predictions (e.g. to ED).
    uses_fine_labels = True

    def __init__(self, first_class: str = "sad", name: str = "hierarchical", C: float = 1000.0,
                 gamma: float | str = 0.1, standardize: bool = False, balance: bool = False,
                 backend: str = "auto", seed: int = 0, class_order: Sequence[str] | None = None,
                 cache_size: float = 200.0, n_components: int = 1024, approx_head: str = "ridge") -> None:
        self.first_class = first_class
        self.name = name
        self.C = C
        self.gamma = gamma
        self.standardize = standardize
        self.balance = balance
        self.backend = backend
        self.seed = seed
        self.class_order = class_order
        self.cache_size = cache_size
        self.n_components = n_components
        self.approx_head = approx_head

    def _stage(self) -> SVMClassifier:
        return SVMClassifier(C=self.C, gamma=self.gamma, standardize=self.standardize, balance=self.balance,
                             backend=self.backend, seed=self.seed, class_order=self.class_order,
                             cache_size=self.cache_size, n_components=self.n_components, approx_head=self.approx_head)

    def check_params(self) -> "SadFirstClassifier":
        """See :meth:`SVMClassifier.check_params` (both stages share the parameters)."""
        self._stage().check_params()
        return self

    def check_fits(self, n_rows: int, n_features: int) -> int:
        """Stage 1 fits on every row (stage 2 on fewer): see :meth:`SVMClassifier.check_fits`."""
        return self._stage().check_fits(n_rows, n_features)

    @property
    def resolved_backend(self) -> str:
        """The library both stages fit with (see :mod:`.backend`)."""
        return self._stage().resolved_backend

    def fit(self, X: np.ndarray, y: np.ndarray) -> "SadFirstClassifier":
        y = np.asarray(y, dtype=object)
        if self.first_class not in set(y):
            raise ValueError(f"Sad-First head: no {self.first_class!r} rows in training labels")
        is_first = y == self.first_class
        self.stage1_ = self._stage().fit(X, np.where(is_first, self.first_class, REST).astype(object))
        self.stage2_ = self._stage().fit(np.asarray(X)[~is_first], y[~is_first])
        self.backend_ = self.stage1_.backend_
        self.classes_ = np.array(sorted(set(y)), dtype=object)
        self.n_features_in_ = self.stage1_.n_features_in_
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        out = self.stage2_.predict(X).astype(object)
        out[self.stage1_.predict(X) == self.first_class] = self.first_class
        return out

    def describe(self) -> dict:
        return {"name": self.name, "first_class": self.first_class,
                **{k: v for k, v in self._stage().describe().items() if k != "name"}}
