"""Speaker-verification scoring: cosine scores, EER and minDCF (trials: :mod:`deeptalk_ser.data.trials`).

Conventions (WeSpeaker / NIST SRE):

* A trial is *accepted* when ``score >= threshold``. The operating points are the
  thresholds at every unique score plus +inf (reject everything), so tied scores always
  move together and never produce an operating point a real threshold cannot reach.
* EER is read off the ROC exactly: where miss and false-alarm rates cross between two
  operating points, both are linearly interpolated (no nearest-point rounding).
* minDCF is normalised: ``min_t [c_miss P_miss(t) p + c_fa P_fa(t) (1-p)]`` divided by
  ``min(c_miss p, c_fa (1-p))``, the cost of the better trivial system, so 1.0 means
  "no better than always accepting or always rejecting".
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

import numpy as np

from deeptalk_ser.utils.progress import progress


def unit_rows(x: np.ndarray, dtype: Any = np.float64) -> np.ndarray:
    """Rows of ``x`` (as ``dtype``) scaled to unit L2 norm; all-zero rows stay zero (they score 0)."""
    work = np.asarray(x, dtype=dtype)
    n = np.linalg.norm(work, axis=-1, keepdims=True)
    return np.divide(work, n, out=np.zeros_like(work), where=n > 0)


def cosine_scores(
    emb: np.ndarray,
    index: Mapping[str, int],
    trials: Sequence[tuple[int, str, str]],
    chunk: int = 1 << 16,
) -> np.ndarray:
    """Cosine similarity of each trial's enrol and test rows of ``emb`` (float64, one per trial).

    Rows are L2-normalised once; all-zero rows score 0. Work is done in chunks of trials so
    memory stays O(chunk * dim) even for millions of trials. Raises KeyError listing the
    ids that have no row in ``index``.
    """
    emb = np.asarray(emb)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n, dim), got shape {emb.shape}")
    enrol = [t[1] for t in trials]
    test = [t[2] for t in trials]
    missing = sorted({x for x in itertools.chain(enrol, test) if x not in index})
    if missing:
        shown = ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else "")
        raise KeyError(f"{len(missing)} trial id(s) have no embedding: {shown}")
    a = np.fromiter((index[x] for x in enrol), dtype=np.int64, count=len(enrol))
    b = np.fromiter((index[x] for x in test), dtype=np.int64, count=len(test))
    if len(a) and (max(a.max(), b.max()) >= len(emb) or min(a.min(), b.min()) < 0):
        raise IndexError(f"index points outside the {len(emb)} embedding rows")

    unit = unit_rows(emb, np.promote_types(emb.dtype, np.float32))  # float32 stores stay float32 (memory)
    out = np.empty(len(a), dtype=np.float64)
    starts = range(0, len(a), chunk)
    for s in progress(starts, total=len(starts), desc="scoring trials", unit="chunk", disable_below=2):
        out[s : s + chunk] = np.einsum("ij,ij->i", unit[a[s : s + chunk]], unit[b[s : s + chunk]])
    return out


def _error_curves(
    scores: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Miss and false-alarm rates at thresholds ``[unique scores..., +inf]`` (accept if >=).

    One sort, O(n log n). Ties share a threshold: P_miss(u_m) counts targets scoring strictly
    below u_m, P_fa(u_m) non-targets scoring at or above it.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 1 or scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must be equal 1-D")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or inf")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0/1")
    is_tar = labels.astype(bool)
    n_tar = int(is_tar.sum())
    n_non = len(is_tar) - n_tar
    if n_tar == 0 or n_non == 0:
        raise ValueError(f"need both target and non-target trials (got {n_tar} and {n_non})")

    uniq, inv = np.unique(scores, return_inverse=True)
    tar_at = np.bincount(inv, weights=is_tar, minlength=len(uniq))
    non_at = np.bincount(inv, weights=~is_tar, minlength=len(uniq))
    p_miss = np.concatenate([[0.0], np.cumsum(tar_at)]) / n_tar
    p_fa = 1.0 - np.concatenate([[0.0], np.cumsum(non_at)]) / n_non
    p_fa[-1] = 0.0  # exact, not 1 - (sum/n) rounding
    p_miss[-1] = 1.0
    thresholds = np.concatenate([uniq, [np.inf]])
    return thresholds, p_miss, p_fa


def compute_eer(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Equal error rate and its threshold (accept if ``score >= threshold``).

    P_miss - P_fa rises from -1 to +1 along the thresholds; EER is where it crosses zero,
    interpolating both rates linearly between the two bracketing operating points. The
    threshold is interpolated the same way between the two bracketing unique scores (the
    lower one when the upper bracket is +inf). Perfect separation gives 0, fully reversed
    scores give 1.
    """
    thr, p_miss, p_fa = _error_curves(scores, labels)
    d = p_miss - p_fa
    i = int(np.argmax(d >= 0))  # first operating point at or past the crossing; d[-1] == 1
    if d[i] == 0 or i == 0:
        return float(p_miss[i]), float(thr[i])
    alpha = -d[i - 1] / (d[i] - d[i - 1])
    eer = p_miss[i - 1] + alpha * (p_miss[i] - p_miss[i - 1])
    if np.isfinite(thr[i]):
        threshold = thr[i - 1] + alpha * (thr[i] - thr[i - 1])
    else:  # crossing on the last segment: no finite upper score to interpolate towards
        threshold = thr[i - 1]
    return float(eer), float(threshold)


def compute_min_dcf(
    scores: np.ndarray,
    labels: np.ndarray,
    p_target: float,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> float:
    """Normalised minimum detection cost over all thresholds (always <= 1)."""
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError("c_miss and c_fa must be positive")
    _, p_miss, p_fa = _error_curves(scores, labels)
    dcf = c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa
    return float(dcf.min() / min(c_miss * p_target, c_fa * (1.0 - p_target)))


def score_verification(
    emb: np.ndarray,
    index: Mapping[str, int],
    trials: Sequence[tuple[int, str, str]],
    p_targets: Sequence[float] = (0.01, 0.05),
    speaker_of: Mapping[str, str] | None = None,
    intervals: Mapping[str, Any] | None = None,
) -> dict:
    """Cosine-score ``trials`` and summarise as JSON-ready floats.

    Returns ``{"eer", "eer_threshold", "min_dcf": {"p0.01": ..., ...}, "n_trials",
    "n_target", "n_nontarget"}``; EER is a fraction (0.05 = 5 %), minDCF uses c_miss = c_fa = 1.
    With ``speaker_of`` (utterance id -> speaker) and ``intervals`` (``n_resamples``, ``seed``,
    ``level``) also ``ci95: {"eer": [lo, hi]}``, a speaker-level bootstrap interval in which
    each trial follows its test utterance's speaker (:mod:`deeptalk_ser.evaluation.intervals`).
    """
    labels = np.fromiter((int(t[0]) for t in trials), dtype=np.int64, count=len(trials))
    scores = cosine_scores(emb, index, trials)
    eer, thr = compute_eer(scores, labels)
    n_target = int(labels.sum())
    extra: dict[str, Any] = {}
    if speaker_of is not None and intervals is not None:
        from deeptalk_ser.evaluation.intervals import eer_bootstrap

        extra["ci95"] = eer_bootstrap(scores, labels, [speaker_of[t[2]] for t in trials], int(intervals["n_resamples"]),
                                      int(intervals["seed"]), float(intervals["level"]))
    return {
        **extra,
        "eer": eer,
        "eer_threshold": thr,
        "min_dcf": {f"p{p:g}": compute_min_dcf(scores, labels, p) for p in p_targets},
        "n_trials": len(trials),
        "n_target": n_target,
        "n_nontarget": len(trials) - n_target,
    }
