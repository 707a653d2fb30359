"""The paper's Sad-First hierarchical head, scored as a true end-to-end classifier.

Stage 1: ``first_class`` (sad) vs the rest. Stage 2: the remaining classes, trained on the
non-``first_class`` rows only. Every test row gets exactly one final label: ``first_class``
if stage 1 says so, else stage 2's label. (The paper's code concatenated the two stages'
predictions into one score, which is not a 4-class score; see DEEPTALK_SPEC.md section 5.)
"""

from __future__ import annotations

import numpy as np

from deeptalk_ser.evaluation.classifiers.svm import SVMClassifier

REST = "__rest__"


class SadFirstClassifier:
    #: trained on the fine (4 ER) labels; the task maps its predictions (e.g. to ED).
    uses_fine_labels = True

    def __init__(self, first_class: str = "sad", name: str = "hierarchical", **svm_kwargs) -> None:
        self.first_class, self.name = first_class, name
        self.stage1 = SVMClassifier(**svm_kwargs)
        self.stage2 = SVMClassifier(**svm_kwargs)
        self.backend = self.stage1.backend

    def fit(self, X: np.ndarray, y: np.ndarray) -> "SadFirstClassifier":
        y = np.asarray(y, dtype=object)
        if self.first_class not in set(y):
            raise ValueError(f"Sad-First head: no {self.first_class!r} rows in training labels")
        is_first = y == self.first_class
        self.stage1.fit(X, np.where(is_first, self.first_class, REST).astype(object))
        self.stage2.fit(np.asarray(X)[~is_first], y[~is_first])
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        out = self.stage2.predict(X).astype(object)
        out[self.stage1.predict(X) == self.first_class] = self.first_class
        return out

    def describe(self) -> dict:
        return {"name": self.name, "first_class": self.first_class, **{k: v for k, v in self.stage1.describe().items() if k != "name"}}
