"""Tuned heads: C and gamma chosen inside each training fold by speaker-grouped cross-validation.

The paper tuned its SVM with an auto-tuning tool and reports only the result; a fixed C=1000 /
gamma=0.1 collapses on any feature not on the unit sphere. Here the search is *nested*: for each
outer (protocol) fold, scikit-learn's ``GridSearchCV`` runs a ``GroupKFold`` over the training
fold's speakers (no speaker in both an inner train and an inner validation part), picks the grid
point with the best inner score (balanced accuracy = UA by default), refits it on the whole
training fold and only then predicts the outer test fold, which the search never sees.

Settings live in their own config node (``tuning.enabled``, ``tuning.grid``, ``tuning.folds``,
``tuning.scoring``), apart from the classifier they tune. A grid key the head does not have
itself but its stages do (``C`` for Sad-First, whose stages are SVMs) sets every stage to the
same value: the paper's one SVM setting; ``first_stage__C`` tunes one stage alone.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from sklearn.model_selection import GridSearchCV, GroupKFold

from deeptalk_ser.utils.errors import ConfigError


def check_grid(grid: Mapping[str, Sequence[Any]], params: Sequence[str]) -> list[dict[str, list[Any]]]:
    """The grid as scikit-learn's ``param_grid`` (a list of dicts), refusing parameters the
    classifier and its stages do not have, or empty lists. A key found only in stages
    (``C`` -> ``first_stage__C``, ``second_stage__C``) ties those stages to one value."""
    out = {str(k): list(v) for k, v in grid.items()}
    empty = [k for k, v in out.items() if not v]
    if empty or not out:
        raise ConfigError("tuning.grid", f"every grid entry needs at least one value (empty: {empty})")
    tied = {k: [p for p in params if p.endswith(f"__{k}")] for k in out if k not in params}
    unknown = sorted(k for k, stages in tied.items() if not stages)
    if unknown:
        raise ConfigError("tuning.grid", f"unknown parameter(s) {unknown}; the classifier has {sorted(params)}")
    direct = {k: v for k, v in out.items() if k not in tied}
    if not tied:
        return [direct]
    return [{**direct, **{p: [value] for k, value in zip(tied, combo) for p in tied[k]}}
            for combo in itertools.product(*(out[k] for k in tied))]


def tuned_fit(make_classifier: Callable[[], Any], grid: Mapping[str, Sequence[Any]], X: np.ndarray, y: np.ndarray,
              groups: np.ndarray, inner_folds: int = 3, scoring: str = "balanced_accuracy") -> tuple[Any, dict[str, Any]]:
    """Grid search on (X, y) with speaker-grouped inner folds; returns the refitted best estimator
    and what was chosen (best parameters, inner score, every grid point's mean inner score)."""
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ConfigError("tuning.folds", f"nested tuning needs >= 2 speakers in a training fold, got {n_groups}")
    k = min(int(inner_folds), n_groups)
    if k < 2:
        raise ConfigError("tuning.folds", f"must be >= 2, got {inner_folds}")
    base = make_classifier()
    search = GridSearchCV(base, param_grid=check_grid(grid, list(base.get_params(deep=True))), cv=GroupKFold(n_splits=k),
                          scoring=scoring, refit=True, error_score="raise")
    search.fit(X, y, groups=groups)
    table = [{**{p: _plain(v) for p, v in params.items()}, "inner_score": float(score)}
             for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"])]
    return search.best_estimator_, {"best_params": {p: _plain(v) for p, v in search.best_params_.items()},
                                    "inner_score": float(search.best_score_), "inner_folds": k, "grid_scores": table}


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def resolve_grid(grid: Mapping[str, Sequence[Any]] | None, clf: Any) -> dict[str, list[Any]]:
    """``tuning.grid`` as given, or (null) the head's own ``default_grid``: each head has its own
    parameters, so one global grid cannot fit them all."""
    if grid is None:
        grid = getattr(clf, "default_grid", None)
        if not grid:
            raise ConfigError("tuning.grid", f"{type(clf).__name__} has no default grid; give tuning.grid")
    return {str(k): list(v) for k, v in grid.items()}
