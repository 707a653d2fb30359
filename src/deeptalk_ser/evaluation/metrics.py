"""Classification metrics: WA (accuracy), UA (mean per-class recall), macro-F1, per-class F1
and the confusion matrix, over a fixed class order so folds can be pooled and compared."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> dict:
    y_true, y_pred, classes = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object), list(classes)
    if len(y_true) == 0:
        nan = float("nan")
        return {"n": 0, "wa": nan, "ua": nan, "macro_f1": nan, "f1_per_class": {c: nan for c in classes},
                "recall_per_class": {c: nan for c in classes}, "confusion": [[0] * len(classes) for _ in classes]}
    cm = confusion_matrix(y_true, y_pred, labels=classes)
    support = cm.sum(axis=1)
    present = support > 0
    recall = np.divide(np.diag(cm), support, out=np.zeros(len(classes)), where=present)
    f1 = f1_score(y_true, y_pred, labels=classes, average=None, zero_division=0)
    return {
        "n": int(len(y_true)),
        "wa": float(np.mean(y_true == y_pred)) if len(y_true) else float("nan"),
        # UA over classes present in this test set (a LOSO fold may lack a class)
        "ua": float(recall[present].mean()) if present.any() else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "f1_per_class": {c: float(v) for c, v in zip(classes, f1)},
        "recall_per_class": {c: float(v) for c, v in zip(classes, recall)},
        "confusion": cm.tolist(),
    }
