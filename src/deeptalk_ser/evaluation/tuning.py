"""Tuned heads: C and gamma chosen inside each training fold by speaker-grouped cross-validation.

The paper tuned its SVM with an auto-tuning tool and reports only the result; a fixed C=1000 /
gamma=0.1 collapses on any feature not on the unit sphere. Here the search is *nested*: for each
outer (protocol) fold, scikit-learn's ``GridSearchCV`` runs a ``GroupKFold`` over the training
fold's speakers (no speaker in both an inner train and an inner validation part), picks the grid
point with the best inner score (balanced accuracy = UA by default), refits it on the whole
training fold and only then predicts the outer test fold, which the search never sees.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
from sklearn.model_selection import GridSearchCV, GroupKFold

from deeptalk_ser.utils.errors import ConfigError

#: the documented default grid (conf/classifier/*.yaml ``tune_grid``)
DEFAULT_GRID: dict[str, list[Any]] = {"C": [1.0, 10.0, 100.0, 1000.0], "gamma": ["scale", 0.01, 0.1, 1.0]}


def check_grid(grid: Mapping[str, Sequence[Any]], params: Sequence[str]) -> dict[str, list[Any]]:
    """The grid as lists, refusing parameters the classifier does not have or empty lists."""
    out = {str(k): list(v) for k, v in grid.items()}
    unknown = sorted(set(out) - set(params))
    if unknown:
        raise ConfigError("classifier.tune_grid", f"unknown parameter(s) {unknown}; the classifier has {sorted(params)}")
    empty = [k for k, v in out.items() if not v]
    if empty or not out:
        raise ConfigError("classifier.tune_grid", f"every grid entry needs at least one value (empty: {empty})")
    return out


def tuned_fit(make_classifier: Callable[[], Any], grid: Mapping[str, Sequence[Any]], X: np.ndarray, y: np.ndarray,
              groups: np.ndarray, inner_folds: int = 3, scoring: str = "balanced_accuracy") -> tuple[Any, dict[str, Any]]:
    """Grid search on (X, y) with speaker-grouped inner folds; returns the refitted best estimator
    and what was chosen (best parameters, inner score, every grid point's mean inner score)."""
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ConfigError("classifier.tune_folds", f"nested tuning needs >= 2 speakers in a training fold, got {n_groups}")
    k = min(int(inner_folds), n_groups)
    if k < 2:
        raise ConfigError("classifier.tune_folds", f"must be >= 2, got {inner_folds}")
    base = make_classifier()
    search = GridSearchCV(base, param_grid=check_grid(grid, list(base.get_params())), cv=GroupKFold(n_splits=k),
                          scoring=scoring, refit=True, error_score="raise")
    search.fit(X, y, groups=groups)
    table = [{**{p: _plain(v) for p, v in params.items()}, "inner_score": float(score)}
             for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"])]
    return search.best_estimator_, {"best_params": {p: _plain(v) for p, v in search.best_params_.items()},
                                    "inner_score": float(search.best_score_), "inner_folds": k, "grid_scores": table}


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
