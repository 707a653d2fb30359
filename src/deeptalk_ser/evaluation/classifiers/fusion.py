"""Fused features inside the classifier: one scaler per encoder block, fitted on the training fold.

``encoder=fusion`` concatenates the raw embeddings of its parts (e.g. 256 GE2E dimensions and 88
eGeMAPS functionals, ``embedding/fusion.py``). :class:`BlockScaler` is the first step of the
head's pipeline (``SVMClassifier(blocks=[256, 88])``): on the rows it is fitted on (the training
fold, never a test fold) it z-scores every feature and divides each block by the square root of
its width, so every block carries the same total variance (1) whatever its dimension: 88
eGeMAPS features neither drown in nor drown 256 GE2E dimensions, and the paper's fixed RBF SVM
(gamma=0.1, no scaling) sees distances on the scale of unit-norm embeddings. A feature constant
on the training rows becomes 0. Its fitted state is plain numpy arrays, so a fused head is saved
(``evaluation/heads.py``) like any other and ``predict.py`` applies the same scaling to new audio.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from deeptalk_ser.utils.errors import ConfigError


class BlockScaler(TransformerMixin, BaseEstimator):
    """Per block of consecutive columns (``blocks``: their widths, in order): z-score each
    feature on the fitted rows, then divide by sqrt(block width)."""

    def __init__(self, blocks: Sequence[int] = ()) -> None:
        self.blocks = blocks

    def fit(self, X: np.ndarray, y: Any = None) -> "BlockScaler":
        X = np.asarray(X, dtype=np.float64)
        widths = [int(w) for w in self.blocks]
        if not widths or min(widths) < 1 or sum(widths) != X.shape[1]:
            raise ValueError(f"blocks {widths} do not tile the {X.shape[1]} feature columns")
        std = X.std(axis=0)
        per_column = np.repeat(np.asarray(widths, np.float64), widths)
        self.mean_ = X.mean(axis=0)
        self.scale_ = np.divide(1.0, std * np.sqrt(per_column), out=np.zeros_like(std), where=std > 0)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"{X.shape[1]} feature columns, the scaler was fitted on {self.n_features_in_}")
        return ((X - self.mean_) * self.scale_).astype(np.float32)


def scaled_pipeline(model: Any, blocks: Sequence[int] | None, standardize: bool) -> Any:
    """``model`` behind the fused-block scaler (``blocks`` set) and a per-feature ``StandardScaler``
    (``standardize``), both fitted on the training fold only; the bare model when neither is asked."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    steps = [("fuse", BlockScaler(list(blocks)))] if blocks else []
    steps += [("scale", StandardScaler())] if standardize else []
    return Pipeline([*steps, ("svc", model)]) if steps else model


def blocks_keys(clf: Any) -> list[str]:
    """The ``blocks`` parameters of a head (its own, or each stage's: ``first_stage__blocks``)."""
    return [k for k in clf.get_params(deep=True) if k.split("__")[-1] == "blocks"]


def check_fusable(clf: Any) -> None:
    """Refuse, before any extraction, a head that cannot scale fused blocks on its training fold."""
    if not blocks_keys(clf):
        raise ConfigError("classifier", f"encoder=fusion scales each encoder's block inside the head, on the "
                                        f"training fold; {type(clf).__name__} has no blocks parameter (use "
                                        "classifier=svm or classifier=hierarchical)")


def with_blocks(make_classifier: Callable[[], Any], blocks: Sequence[int]) -> Callable[[], Any]:
    """A factory of ``make_classifier``'s heads with every ``blocks`` parameter set to ``blocks``."""
    widths = [int(w) for w in blocks]
    check_fusable(make_classifier())

    def make() -> Any:
        clf = make_classifier()
        return clf.set_params(**{k: list(widths) for k in blocks_keys(clf)})

    return make
