"""The paper's Sad-First hierarchical head, scored as a true end-to-end classifier.

Stage 1: ``first_class`` (sad) vs the rest. Stage 2: the remaining classes, trained on the
non-``first_class`` rows only. Every test row gets exactly one final label: ``first_class``
if stage 1 says so, else stage 2's label. (The paper's code concatenated the two stages'
predictions into one score, which is not a 4-class score; see docs/deeptalk.md section 5.)

A scikit-learn meta-estimator (like ``OneVsRestClassifier(estimator)``): the stages are
estimators given as parameters, so any head can be a stage and ``first_stage__C`` reaches
into a stage; ``second_stage=None`` uses a clone of the first (the paper: one SVM setting).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from deeptalk_ser.evaluation.classifiers.svm import SVMClassifier

REST = "__rest__"


class SadFirstClassifier(ClassifierMixin, BaseEstimator):
    """Two stages around ``first_class``; ``fit`` builds clones of the given stage estimators as
    ``stage1_`` and ``stage2_`` (the parameters themselves stay unfitted, as scikit-learn wants)."""

    #: trained on the fine (4 ER) labels; the task maps its predictions (e.g. to ED).
    uses_fine_labels = True

    def __init__(self, first_stage: Any = None, second_stage: Any = None, first_class: str = "sad",
                 name: str = "hierarchical") -> None:
        self.first_stage = first_stage
        self.second_stage = second_stage
        self.first_class = first_class
        self.name = name

    def stage_estimators(self) -> dict[str, Any]:
        """The stage estimators by parameter name (the paper's SVM when none is given)."""
        first = self.first_stage if self.first_stage is not None else SVMClassifier()
        return {"first_stage": first, "second_stage": self.second_stage if self.second_stage is not None else first}

    @property
    def default_grid(self) -> dict[str, list[Any]]:
        """The first stage's grid; its keys tie both stages to one value (evaluation/tuning.py)."""
        return dict(getattr(self.stage_estimators()["first_stage"], "default_grid", {}))

    def check_params(self) -> "SadFirstClassifier":
        """Each stage's own check (``classifier.C`` etc.: the keys ``classifier=hierarchical`` shares with svm)."""
        for stage in self.stage_estimators().values():
            if hasattr(stage, "check_params"):
                stage.check_params()
        return self

    def check_fits(self, n_rows: int, n_features: int) -> int:
        """Stage 1 fits on every row (stage 2 on fewer): the first stage's estimate."""
        stage = self.stage_estimators()["first_stage"]
        return stage.check_fits(n_rows, n_features) if hasattr(stage, "check_fits") else 0

    @property
    def resolved_backend(self) -> str:
        """The library the stages fit with (see :mod:`.backend`); ``a+b`` when they differ."""
        names = {getattr(s, "resolved_backend", type(s).__name__) for s in self.stage_estimators().values()}
        return "+".join(sorted(names))

    def fit(self, X: np.ndarray, y: np.ndarray) -> "SadFirstClassifier":
        y = np.asarray(y, dtype=object)
        if self.first_class not in set(y):
            raise ValueError(f"Sad-First head: no {self.first_class!r} rows in training labels")
        is_first = y == self.first_class
        stages = self.stage_estimators()
        self.stage1_ = clone(stages["first_stage"]).fit(X, np.where(is_first, self.first_class, REST).astype(object))
        self.stage2_ = clone(stages["second_stage"]).fit(np.asarray(X)[~is_first], y[~is_first])
        self.backend_ = getattr(self.stage1_, "backend_", self.resolved_backend)
        self.classes_ = np.array(sorted(set(y)), dtype=object)
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        out = np.asarray(self.stage2_.predict(X)).astype(object)
        out[np.asarray(self.stage1_.predict(X)) == self.first_class] = self.first_class
        return out

    def describe(self) -> dict:
        stages = self.stage_estimators()
        return {"name": self.name, "first_class": self.first_class,
                **{key: (s.describe() if hasattr(s, "describe") else type(s).__name__) for key, s in stages.items()}}


def sad_first(first_class: str = "sad", name: str = "hierarchical", **svm_params: Any) -> SadFirstClassifier:
    """``classifier=hierarchical`` as the paper has it: one SVM setting (``classifier.C``,
    ``classifier.gamma``, ... inherited from ``conf/classifier/svm.yaml``) for both stages."""
    return SadFirstClassifier(first_stage=SVMClassifier(**svm_params), first_class=first_class, name=name)
