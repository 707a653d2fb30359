"""Speaker-level bootstrap confidence intervals for emotion and verification scores.

Utterances of one speaker are not independent draws: they share the voice, the recording and
the speaker's way of acting each emotion, so an utterance-level bootstrap makes intervals too
narrow. Here the resampled unit is the **speaker** (a cluster bootstrap): each resample draws as
many speakers as the test set has, with replacement, and takes every test utterance (or trial) of
each drawn speaker together, counted as often as the speaker was drawn. The interval is the
percentile interval of the score over the resamples.

Resampling is done by :func:`scipy.stats.bootstrap` (``method="percentile"``, seeded ``rng``,
vectorised in batches): the data handed to it are the speaker indices ``0..S-1`` and the
statistic turns a batch of drawn index rows into scores by weighting per-speaker sufficient
statistics (a confusion matrix per speaker; trial-score counts per speaker), so 1000 resamples
cost a few matrix products rather than 1000 metric calls. The ``confidence-intervals`` package
(which bootstraps by condition) was considered: it loops over resamples in Python calling the
metric each time, and its last release is from 2023; scipy is already a dependency.

Edge cases, decided here:

* **UA and macro-F1 on a resample that misses a class** (every speaker drawn lacks it): the mean
  over the classes present in that resample's true labels, which is what UA means on that
  sample, and what :func:`deeptalk_ser.evaluation.metrics.classification_metrics` does for a
  fold lacking a class.
* **EER on a resample with no target or no non-target trial**: left out of the percentiles
  (``nan``, ignored); the interval is ``None`` when every resample is like that.
* **Fewer than two test speakers** (e.g. the authors' CREMA-D arrays, which carry no speaker
  ids): a speaker-level interval does not exist; ``ci95`` is left empty and a warning says why,
  rather than an utterance-level interval that would look like one.
* **Which trials belong to a speaker** (verification): a trial follows its *test* utterance's
  speaker, target and non-target trials alike. Drawing a speaker twice counts all of their test
  trials twice.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

#: the resampled quantities and how they are named in ``results.json`` ``ci95`` and the loggers
EMOTION_METRICS = ("wa", "ua", "macro_f1")


def speaker_codes(speakers: Sequence[Any]) -> tuple[np.ndarray, int]:
    """Each item's speaker as an index ``0..S-1`` (first-seen order) and ``S``."""
    speakers = np.asarray(speakers, dtype=object)
    _, first, codes = np.unique(speakers.astype(str), return_index=True, return_inverse=True)
    # renumber in first-seen order so the draws do not depend on how speaker names sort
    order = np.argsort(np.argsort(first))
    return order[codes.reshape(-1)].astype(np.intp), len(first)


def draw_counts(idx: np.ndarray, n_clusters: int) -> np.ndarray:
    """How often each cluster was drawn in each row of ``idx`` ``(B, S)`` -> ``(B, n_clusters)``."""
    idx = np.asarray(idx).astype(np.intp).reshape(-1, idx.shape[-1])
    b = idx.shape[0]
    flat = (idx + n_clusters * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n_clusters).reshape(b, n_clusters).astype(np.float64)


def cluster_bootstrap(n_clusters: int, statistic: Callable[[np.ndarray], np.ndarray], n_resamples: int = 1000,
                      seed: int = 0, level: float = 0.95, batch: int = 200) -> np.ndarray | None:
    """Percentile interval of a statistic over cluster resamples: ``statistic(counts)`` gets a
    ``(B, n_clusters)`` array of draw counts and returns ``(k, B)`` values (``nan`` = undefined on
    that resample, ignored). Returns ``(k, 2)`` [low, high], rows of ``nan`` where no resample
    defined the value, or ``None`` with fewer than 1 resample or fewer than 2 clusters."""
    import warnings

    from scipy.stats import bootstrap

    if n_resamples < 1:
        return None
    if n_clusters < 2:
        log.warning("no speaker-level interval: the scored utterances come from %d speaker(s), a speaker "
                    "bootstrap needs at least 2 (ci95 left empty)", n_clusters)
        return None
    if not 0.0 < level < 1.0:
        raise ValueError(f"the interval level must be in (0, 1), got {level}")
    values: list[np.ndarray] = []

    def stat(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        v = np.asarray(statistic(draw_counts(idx, n_clusters)), dtype=np.float64)
        values.append(v)
        return v

    # scipy draws the index rows (seeded) and calls ``stat`` in batches; the percentiles are taken
    # here with nan ignored (scipy's own would turn a single undefined resample into a nan bound)
    with warnings.catch_warnings():  # scipy warns when its own percentile meets an undefined (nan) resample
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", message=".*confidence interval cannot be calculated")
        bootstrap((np.arange(n_clusters),), stat, n_resamples=int(n_resamples), vectorized=True, method="percentile",
                  confidence_level=level, batch=batch, rng=np.random.default_rng(seed))
    dist = np.concatenate(values, axis=-1)  # (k, n_resamples)
    alpha = (1.0 - level) / 2.0
    out = np.full((dist.shape[0], 2), np.nan)
    for k, row in enumerate(dist):
        row = row[np.isfinite(row)]
        if len(row):
            out[k] = np.percentile(row, [100 * alpha, 100 * (1 - alpha)])
    return out


def _interval(row: np.ndarray) -> list[float] | None:
    return None if not np.all(np.isfinite(row)) else [float(row[0]), float(row[1])]


def classification_scores(conf: np.ndarray) -> np.ndarray:
    """WA, UA and macro-F1 of a stack of confusion matrices ``(B, K, K)`` (rows true) -> ``(3, B)``;
    UA and macro-F1 over the classes present in each matrix's true labels."""
    tp = np.diagonal(conf, axis1=1, axis2=2)
    support = conf.sum(axis=2)
    predicted = conf.sum(axis=1)
    total = support.sum(axis=1)
    present = support > 0
    n_present = present.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        wa = tp.sum(axis=1) / total
        recall = np.where(present, tp / np.where(present, support, 1), 0.0)
        f1_den = support + predicted  # 2tp + fp + fn
        f1 = np.where(f1_den > 0, 2 * tp / np.where(f1_den > 0, f1_den, 1), 0.0)
        ua = np.where(n_present > 0, (recall * present).sum(axis=1) / n_present, np.nan)
        macro_f1 = np.where(n_present > 0, (f1 * present).sum(axis=1) / n_present, np.nan)
    return np.stack([wa, ua, macro_f1])


def speaker_bootstrap(y_true: Sequence[Any], y_pred: Sequence[Any], speakers: Sequence[Any], classes: Sequence[str],
                      n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, list[float] | None]:
    """``{"wa": [lo, hi], "ua": [...], "macro_f1": [...]}``: percentile intervals of the pooled
    scores over speaker resamples (module docstring). ``{}`` with ``n_resamples`` 0."""
    y_true, y_pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    if not (len(y_true) == len(y_pred) == len(speakers)):
        raise ValueError(f"{len(y_true)} true labels, {len(y_pred)} predictions, {len(speakers)} speakers")
    if len(y_true) == 0 or n_resamples < 1:
        return {}
    codes, n_spk = speaker_codes(speakers)
    # one more column than classes: a prediction outside them (never the true class) counts as
    # wrong; that class has no true label, so it never enters UA or macro-F1
    k = len(classes) + 1
    cls = {c: i for i, c in enumerate(classes)}
    unknown = sorted({str(c) for c in y_true if c not in cls})
    if unknown:
        raise ValueError(f"true labels {unknown} outside the classes {list(classes)}")
    t = np.array([cls[c] for c in y_true], dtype=np.intp)
    p = np.array([cls.get(c, k - 1) for c in y_pred], dtype=np.intp)
    per_speaker = np.bincount((codes * k + t) * k + p, minlength=n_spk * k * k).reshape(n_spk, k * k).astype(float)
    ci = cluster_bootstrap(n_spk, lambda w: classification_scores((w @ per_speaker).reshape(-1, k, k)),
                           n_resamples, seed, level)
    return {} if ci is None else {name: _interval(ci[i]) for i, name in enumerate(EMOTION_METRICS)}


def weighted_eer(tar_at: np.ndarray, non_at: np.ndarray) -> np.ndarray:
    """EER of weighted trial counts at the sorted unique scores ``(B, U)`` -> ``(B,)``, read off
    the curves exactly as :func:`deeptalk_ser.evaluation.verification.compute_eer` (accept if
    ``score >=`` threshold, linear interpolation at the crossing); ``nan`` without targets or
    non-targets."""
    n_tar = tar_at.sum(axis=1, keepdims=True)
    n_non = non_at.sum(axis=1, keepdims=True)
    zeros = np.zeros((tar_at.shape[0], 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        p_miss = np.concatenate([zeros, np.cumsum(tar_at, axis=1)], axis=1) / n_tar
        p_fa = 1.0 - np.concatenate([zeros, np.cumsum(non_at, axis=1)], axis=1) / n_non
    p_miss[:, -1], p_fa[:, -1] = 1.0, 0.0
    d = p_miss - p_fa
    i = np.argmax(d >= 0, axis=1)
    rows = np.arange(len(i))
    prev = np.maximum(i - 1, 0)
    d_i, d_prev = d[rows, i], d[rows, prev]
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = np.where((i == 0) | (d_i == 0), 0.0, -d_prev / (d_i - d_prev))
    at_i = (i == 0) | (d_i == 0)
    eer = np.where(at_i, p_miss[rows, i], p_miss[rows, prev] + alpha * (p_miss[rows, i] - p_miss[rows, prev]))
    return np.where((n_tar[:, 0] > 0) & (n_non[:, 0] > 0), eer, np.nan)


def eer_bootstrap(scores: np.ndarray, labels: np.ndarray, speakers: Sequence[Any], n_resamples: int = 1000,
                  seed: int = 0, level: float = 0.95) -> dict[str, list[float] | None]:
    """``{"eer": [lo, hi]}``: percentile interval of the EER over speaker resamples, each trial
    following its test utterance's speaker (module docstring). ``{}`` with ``n_resamples`` 0."""
    from scipy.sparse import csr_matrix

    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    if not (len(scores) == len(labels) == len(speakers)):
        raise ValueError(f"{len(scores)} scores, {len(labels)} labels, {len(speakers)} trial speakers")
    if len(scores) == 0 or n_resamples < 1:
        return {}
    codes, n_spk = speaker_codes(speakers)
    uniq, inv = np.unique(scores, return_inverse=True)
    inv = inv.reshape(-1)
    shape = (n_spk, len(uniq))
    tar = csr_matrix((labels.astype(float), (codes, inv)), shape=shape)  # speaker x score: target trials
    non = csr_matrix(((~labels).astype(float), (codes, inv)), shape=shape)
    # batches small enough that (batch, unique scores) stays a few tens of MB for large trial lists
    batch = int(max(1, min(200, 4_000_000 // max(len(uniq), 1))))
    tar_t, non_t = tar.T.tocsr(), non.T.tocsr()  # score x speaker: (B, S) draws -> (B, U) weighted counts

    def stat(w: np.ndarray) -> np.ndarray:
        return weighted_eer(np.asarray((tar_t @ w.T).T), np.asarray((non_t @ w.T).T))[None]

    ci = cluster_bootstrap(n_spk, stat, n_resamples, seed, level, batch=batch)
    return {} if ci is None else {"eer": _interval(ci[0])}


def interval_settings(cfg: Any) -> dict[str, Any]:
    """``intervals`` of a run config (``n_resamples``, ``seed``, ``level``), with defaults for a
    config that has none (``n_resamples`` 0 turns the intervals off)."""
    node = (cfg.get("intervals") if cfg is not None else None) or {}
    seed = node.get("seed", cfg.get("seed", 0) if cfg is not None else 0)
    return {"n_resamples": int(node.get("n_resamples", 1000)), "seed": int(seed if seed is not None else 0),
            "level": float(node.get("level", 0.95)), "unit": "speaker", "method": "percentile"}


def ci_metrics(ci: dict[str, list[float] | None], prefix: str = "test/", suffix: str = "") -> dict[str, float]:
    """Logger metrics of intervals: ``test/ua_ci_low``, ``test/ua_ci_high``, ..."""
    out: dict[str, float] = {}
    for name, iv in ci.items():
        if iv is not None:
            out[f"{prefix}{name}{suffix}_ci_low"], out[f"{prefix}{name}{suffix}_ci_high"] = iv
    return out


def ci_text(interval: Sequence[float] | None) -> str:
    """``[lo, hi]`` for a printed table, ``-`` without an interval."""
    return "-" if not interval else f"[{interval[0]:.4f}, {interval[1]:.4f}]"
