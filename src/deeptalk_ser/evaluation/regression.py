"""Continuous emotion: embeddings -> arousal (activation) / valence / dominance, scored by the
concordance correlation coefficient (CCC), the measure of the dimensional SER literature
(AVEC, MSP-Podcast challenges), which unlike Pearson's r also penalises bias and scale errors.

Each model is a scikit-learn pipeline: features standardised on the training fold, one
regressor per dimension, the target standardised on the training fold as well
(``TransformedTargetRegressor``) so that one set of SVR hyper-parameters fits ratings on any
scale (IEMOCAP 1-5, MSP-Podcast 1-7).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
from sklearn.base import clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.evaluation.protocols import Fold, check_disjoint
from deeptalk_ser.utils.errors import ConfigError


def ccc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Lin's concordance correlation coefficient, ``2 cov / (var_t + var_p + (mean_t - mean_p)^2)``
    (population moments); NaN when both series are constant and equal (undefined)."""
    t, p = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"ccc needs two 1-D series of one length, got {t.shape} and {p.shape}")
    mt, mp = t.mean(), p.mean()
    cov = np.mean((t - mt) * (p - mp))
    denom = t.var() + p.var() + (mt - mp) ** 2
    return float(2 * cov / denom) if denom > 0 else float("nan")


def dimension_targets(utts: Sequence[Utterance], dimensions: Sequence[str]) -> tuple[list[int], np.ndarray]:
    """Rows whose manifest carries every dimension (as numbers) and the (n, d) target matrix."""
    rows, values = [], []
    for i, u in enumerate(utts):
        vals = [u.extra.get(d) for d in dimensions]
        if all(isinstance(v, (int, float)) and np.isfinite(v) for v in vals):
            rows.append(i)
            values.append(vals)
    return rows, np.asarray(values, dtype=np.float64).reshape(len(rows), len(dimensions))


def make_model(estimator: Any) -> Any:
    """Standardised features -> ``estimator`` on a standardised target."""
    return TransformedTargetRegressor(regressor=make_pipeline(StandardScaler(), clone(estimator)),
                                      transformer=StandardScaler())


def run_dimensional_folds(X: np.ndarray, Y: np.ndarray, dimensions: Sequence[str], folds: Sequence[Fold],
                          models: Mapping[str, Any], speakers: np.ndarray, speaker_independent: bool,
                          progress: Callable[[Any], Any] = lambda it: it) -> dict[str, Any]:
    """Fit every model on each training fold (one regressor per dimension), predict its test
    fold; CCC (and Pearson r, RMSE) per model, dimension and fold, and pooled over the folds."""
    if not models:
        raise ConfigError("task.models", "no regression model configured")
    pooled: dict[str, np.ndarray] = {m: np.full_like(Y, np.nan) for m in models}
    per_fold: list[dict[str, Any]] = []
    for fold in progress(folds):
        shared = check_disjoint(fold, speakers, speaker_independent)
        rec: dict[str, Any] = {"name": fold.name, "n_train": int(len(fold.train)), "n_test": int(len(fold.test)),
                               "speakers_shared": len(shared)}
        for name, est in models.items():
            for j, dim in enumerate(dimensions):
                model = make_model(est).fit(X[fold.train], Y[fold.train, j])
                pred = model.predict(X[fold.test])
                pooled[name][fold.test, j] = pred
                rec[f"{name}/{dim}/ccc"] = ccc(Y[fold.test, j], pred)
        per_fold.append(rec)
    tested = np.unique(np.concatenate([f.test for f in folds]))
    summary: dict[str, Any] = {}
    for name in models:
        for j, dim in enumerate(dimensions):
            t, p = Y[tested, j], pooled[name][tested, j]
            fold_cccs = np.array([f[f"{name}/{dim}/ccc"] for f in per_fold], dtype=np.float64)
            summary[f"{name}/{dim}"] = {
                "ccc": ccc(t, p), "pearson": float(np.corrcoef(t, p)[0, 1]) if t.std() > 0 and p.std() > 0 else float("nan"),
                "rmse": float(np.sqrt(np.mean((t - p) ** 2))),
                "ccc_fold_mean": float(np.nanmean(fold_cccs)) if np.isfinite(fold_cccs).any() else float("nan"),
                "ccc_fold_std": float(np.nanstd(fold_cccs)) if np.isfinite(fold_cccs).any() else float("nan"),
            }
    return {"pooled": summary, "folds": per_fold, "n_tested": int(len(tested)), "predictions": pooled}


def plot_dimensional(Y: np.ndarray, predictions: np.ndarray, dimensions: Sequence[str], path: str, title: str) -> str:
    """Predicted vs rated scatter per dimension (the model's pooled test predictions)."""
    from deeptalk_ser.utils.reporting import pyplot_agg

    plt = pyplot_agg()

    fig, axes = plt.subplots(1, len(dimensions), figsize=(3.2 * len(dimensions), 3.2), squeeze=False)
    for ax, j, dim in zip(axes[0], range(len(dimensions)), dimensions):
        ok = np.isfinite(predictions[:, j])
        ax.scatter(Y[ok, j], predictions[ok, j], s=6, alpha=0.5)
        lo, hi = float(np.nanmin(Y[:, j])), float(np.nanmax(Y[:, j]))
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
        ax.set_xlabel(f"rated {dim}")
        ax.set_ylabel("predicted")
        ax.set_title(f"{dim}: CCC {ccc(Y[ok, j], predictions[ok, j]):.3f}", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
