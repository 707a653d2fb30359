"""The standard heads other toolkits compare with: a linear probe (logistic regression), a linear
SVM, a one-hidden-layer MLP and a cosine k-nearest-neighbour back-end.

Each is scikit-learn's own estimator (``LogisticRegression``, ``LinearSVC``, ``MLPClassifier``,
``KNeighborsClassifier(metric="cosine")``) behind the small interface every head of this project
has (string labels, ``check_params`` before the extraction, ``describe`` for results.json,
``classifier.standardize``, the fused-block scaler of ``encoder=fusion``, a ``default_grid`` for
``tuning.enabled``), so they work in sweeps, as Sad-First stages, tuned and saved (``heads.py``).
The inner model sees integer class codes, as the SVM's does, so a saved head holds no object arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from deeptalk_ser.evaluation.classifiers.fusion import scaled_pipeline
from deeptalk_ser.utils.errors import ConfigError


@dataclass(eq=False, repr=False)
class StandardHead(ClassifierMixin, BaseEstimator):
    """Shared plumbing of the standard heads; a subclass says which scikit-learn estimator it builds
    (:meth:`estimator`) and which grid ``tuning.enabled`` searches by default (:attr:`default_grid`)."""

    #: trained on the task's labels (not the fine ones, see SadFirstClassifier)
    uses_fine_labels: ClassVar[bool] = False
    default_grid: ClassVar[dict[str, list[Any]]] = {}

    standardize: bool = True
    seed: int = 0
    name: str = "head"
    blocks: Sequence[int] | None = None

    resolved_backend: ClassVar[str] = "sklearn"

    def estimator(self, n_train: int, class_counts: Sequence[int] = (2, 2)) -> Any:
        """The unfitted scikit-learn estimator for ``n_train`` training rows with ``class_counts`` per class."""
        raise NotImplementedError

    def trim(self, model: Any) -> None:
        """Drop fitted state prediction does not need (and a saved head should not hold)."""

    def check_params(self) -> "StandardHead":
        """Refuse values the estimator cannot fit with now, naming the ``classifier.`` key, instead
        of in the first fold after the whole extraction (scikit-learn checks them only in ``fit``)."""
        try:
            self.estimator(n_train=1_000_000)._validate_params()
        except (ValueError, TypeError) as exc:
            key = next((k for k in self.get_params() if f"'{k}'" in str(exc)), "")
            raise ConfigError(f"classifier.{key}".rstrip("."), str(exc)) from None
        return self

    def fit(self, X: np.ndarray, y: np.ndarray) -> "StandardHead":
        X, y = np.asarray(X, np.float32), np.asarray(y, dtype=object)
        if len(np.unique(y)) < 2:
            raise ValueError(f"the {self.name} head needs at least 2 classes in training, got {np.unique(y).tolist()}")
        self.classes_ = np.array(sorted(set(y)), dtype=object)
        codes = np.searchsorted(self.classes_, y).astype(np.int64)
        self.model_ = scaled_pipeline(self.estimator(len(y), np.bincount(codes)), self.blocks, self.standardize).fit(X, codes)
        self.trim(self.model_[-1] if hasattr(self.model_, "steps") else self.model_)
        self.backend_ = self.resolved_backend
        self.n_train_ = len(y)
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.asarray(self.model_.predict(np.asarray(X, np.float32))).astype(int)]

    def describe(self) -> dict:
        params = {k: v for k, v in self.get_params().items() if not (k == "blocks" and v is None)}
        return {**params, "blocks": list(self.blocks)} if self.blocks else {**params, "backend": self.resolved_backend}


@dataclass(eq=False, repr=False)
class LogRegClassifier(StandardHead):
    """Linear probe: multinomial logistic regression (L2, lbfgs), as s3prl's / SpeechBrain's linear head."""

    default_grid: ClassVar[dict[str, list[Any]]] = {"C": [0.01, 0.1, 1.0, 10.0]}
    name: str = "logreg"
    C: float = 1.0
    max_iter: int = 1000

    def estimator(self, n_train: int, class_counts: Sequence[int] = (2, 2)) -> Any:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.seed)


@dataclass(eq=False, repr=False)
class LinearSVMClassifier(StandardHead):
    """Linear SVM (liblinear, one-vs-rest; ``loss``: ``squared_hinge``, liblinear's default, or ``hinge``)."""

    default_grid: ClassVar[dict[str, list[Any]]] = {"C": [0.001, 0.01, 0.1, 1.0]}
    name: str = "linear_svm"
    C: float = 0.1
    loss: str = "squared_hinge"
    max_iter: int = 5000

    def estimator(self, n_train: int, class_counts: Sequence[int] = (2, 2)) -> Any:
        from sklearn.svm import LinearSVC

        return LinearSVC(C=self.C, loss=self.loss, max_iter=self.max_iter, random_state=self.seed)


@dataclass(eq=False, repr=False)
class MLPHead(StandardHead):
    """One hidden layer (ReLU, Adam), early stopping on a held-out share of the training fold,
    seeded: EmoBox's small MLP head. A fold too small to hold out every class once trains
    without early stopping (``max_iter`` epochs) instead of failing."""

    default_grid: ClassVar[dict[str, list[Any]]] = {"hidden_size": [64, 256], "alpha": [1e-4, 1e-2]}
    name: str = "mlp"
    hidden_size: int = 256
    alpha: float = 1e-4
    learning_rate_init: float = 1e-3
    max_iter: int = 500
    validation_fraction: float = 0.1

    def estimator(self, n_train: int, class_counts: Sequence[int] = (2, 2)) -> Any:
        from sklearn.neural_network import MLPClassifier

        if not isinstance(self.hidden_size, int) or isinstance(self.hidden_size, bool) or self.hidden_size < 1:
            raise ConfigError("classifier.hidden_size", f"must be a positive integer, got {self.hidden_size!r}")
        return MLPClassifier(hidden_layer_sizes=(self.hidden_size,), alpha=self.alpha,
                             learning_rate_init=self.learning_rate_init, max_iter=self.max_iter,
                             early_stopping=self.can_stop_early(n_train, class_counts),
                             validation_fraction=self.validation_fraction, random_state=self.seed)

    def can_stop_early(self, n_train: int, class_counts: Sequence[int]) -> bool:
        """scikit-learn's stratified hold-out needs every class twice and at least one held-out row per class."""
        return min(class_counts) >= 2 and int(np.ceil(self.validation_fraction * n_train)) >= len(class_counts)

    def trim(self, model: Any) -> None:
        """The optimizer state and random generator serve only further training (``warm_start``):
        without them a saved MLP holds only arrays and its label binarizer."""
        for attr in ("_optimizer", "_random_state"):
            if hasattr(model, attr):
                delattr(model, attr)


@dataclass(eq=False, repr=False)
class KNNClassifier(StandardHead):
    """k nearest training utterances by cosine distance (the speaker toolkits' cosine back-end);
    ``n_neighbors`` is capped at the training rows of a small fold."""

    default_grid: ClassVar[dict[str, list[Any]]] = {"n_neighbors": [5, 10, 20, 40]}
    standardize: bool = False
    name: str = "knn"
    n_neighbors: int = 10
    weights: str = "distance"

    def estimator(self, n_train: int, class_counts: Sequence[int] = (2, 2)) -> Any:
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(n_neighbors=min(self.n_neighbors, n_train) if isinstance(self.n_neighbors, int)
                                    else self.n_neighbors, weights=self.weights, metric="cosine", algorithm="brute")
