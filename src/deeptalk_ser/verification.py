"""Speaker-verification scoring: trial lists, cosine scores, EER and minDCF.

Conventions (WeSpeaker / NIST SRE):

* A trial is ``(label, enrol_id, test_id)`` with label 1 = target (same speaker) and
  0 = non-target. Trial files use the VoxCeleb text format, one ``<1|0> <enrol> <test>``
  per line.
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
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from .errors import DataError
from .io_utils import iter_lines, write_text_atomic
from .manifest import Utterance, check_unique_ids


class Trial(NamedTuple):
    """One verification trial; a plain tuple ``(label, enrol, test)`` compares equal."""

    label: int
    enrol: str
    test: str


# --------------------------------------------------------------------------- trial lists


def generate_trials(
    utterances: Sequence[Utterance],
    n_nontarget_per_target: float | int | None = None,
    seed: int = 0,
) -> list[Trial]:
    """All target pairs plus a seeded random sample of non-target pairs.

    Targets: every unordered same-speaker pair ``(i, j)``, ``i < j`` in input order, with
    ``enrol = utterances[i]``. Non-targets: ``n_nontarget_per_target * n_target`` (rounded
    half up) distinct unordered different-speaker pairs, i.e. the argument is a ratio:
    ``None`` means 1.0 (as many non-targets as targets), 10 means ten per target, 0 none.
    They are drawn uniformly without replacement with ``numpy.random.default_rng(seed)``
    and also stored with the earlier utterance as enrol. No pair appears twice, nor in
    both orders.

    Output order is deterministic for a given input order and seed: targets sorted by
    ``(i, j)``, then non-targets sorted by ``(i, j)``.

    Raises ValueError when there is no target pair (every speaker has one utterance) or
    when more non-targets are requested than exist.
    """
    check_unique_ids(utterances, "generate_trials input")
    ratio = 1.0 if n_nontarget_per_target is None else float(n_nontarget_per_target)
    if not np.isfinite(ratio) or ratio < 0:
        raise ValueError(f"n_nontarget_per_target must be >= 0, got {n_nontarget_per_target!r}")

    n = len(utterances)
    ids = [u.id for u in utterances]
    _, spk = np.unique(np.array([u.speaker for u in utterances], dtype=object), return_inverse=True)
    spk = spk.astype(np.int64)

    groups: dict[int, list[int]] = {}
    for i, s in enumerate(spk.tolist()):
        groups.setdefault(s, []).append(i)
    target_pairs = sorted(p for g in groups.values() for p in itertools.combinations(g, 2))
    n_target = len(target_pairs)
    if n_target == 0:
        raise ValueError("no target trials: every speaker has a single utterance")

    n_nontarget = int(np.floor(ratio * n_target + 0.5))  # half up, not banker's rounding
    available = n * (n - 1) // 2 - n_target
    if n_nontarget > available:
        raise ValueError(
            f"requested {n_nontarget} non-target trials but only {available} different-speaker "
            f"pairs exist; lower n_nontarget_per_target"
        )
    codes = _sample_nontarget_codes(spk, n_nontarget, available, np.random.default_rng(seed))
    nontarget_pairs = zip((codes // n).tolist(), (codes % n).tolist())

    trials = [Trial(1, ids[i], ids[j]) for i, j in target_pairs]
    trials += [Trial(0, ids[i], ids[j]) for i, j in nontarget_pairs]
    return trials


def _sample_nontarget_codes(
    spk: np.ndarray, m: int, available: int, rng: np.random.Generator
) -> np.ndarray:
    """``m`` distinct different-speaker pairs ``i < j`` encoded as ``i * n + j``, sorted.

    Dense requests (at least half of all pairs) enumerate every pair and choose without
    replacement; sparse ones use rejection sampling, which stays fast because each round
    keeps at least half its draws on average and never builds the O(n^2) pair list.
    """
    n = len(spk)
    if m == 0:
        return np.empty(0, dtype=np.int64)
    if 2 * m >= available:
        i, j = np.triu_indices(n, k=1)
        keep = spk[i] != spk[j]
        all_codes = i[keep].astype(np.int64) * n + j[keep]
        return np.sort(rng.choice(all_codes, size=m, replace=False))
    codes = np.empty(0, dtype=np.int64)
    while len(codes) < m:
        draw = max(2 * (m - len(codes)), 1024)
        a = rng.integers(0, n, size=draw)
        b = rng.integers(0, n, size=draw)
        ok = spk[a] != spk[b]
        lo, hi = np.minimum(a[ok], b[ok]), np.maximum(a[ok], b[ok])
        merged = np.concatenate([codes, lo * n + hi])
        _, first = np.unique(merged, return_index=True)
        codes = merged[np.sort(first)]  # de-duplicated, earlier draws win
    return np.sort(codes[:m])


def read_trials(path: str | Path) -> list[Trial]:
    """Read a VoxCeleb-format trial list (``<1|0> <enrol> <test>``; blank lines skipped)."""
    trials = []
    for lineno, line in iter_lines(path, "trial list"):
        fields = line.split()
        if len(fields) != 3:
            raise DataError(path, f"expected '<1|0> <enrol> <test>', got {len(fields)} field(s)", line=lineno)
        if fields[0] not in ("0", "1"):
            raise DataError(path, f"label must be 1 or 0, got {fields[0]!r}", line=lineno)
        trials.append(Trial(int(fields[0]), fields[1], fields[2]))
    if not trials:
        raise DataError(path, "trial list holds no trials")
    return trials


def write_trials(path: str | Path, trials: Iterable[tuple[int, str, str]]) -> None:
    """Write a VoxCeleb-format trial list atomically; ids must not contain whitespace."""
    lines = []
    for n, (label, enrol, test) in enumerate(trials):
        if label not in (0, 1):
            raise ValueError(f"trial {n}: label must be 0 or 1, got {label!r}")
        for name in (enrol, test):
            if not name or len(str(name).split()) != 1 or str(name) != str(name).strip():
                raise ValueError(f"trial {n}: id {name!r} is empty or contains whitespace")
        lines.append(f"{int(label)} {enrol} {test}\n")
    write_text_atomic(path, "".join(lines))


# --------------------------------------------------------------------------- scoring


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

    work = emb.astype(np.promote_types(emb.dtype, np.float32), copy=False)
    norms = np.linalg.norm(work, axis=1, keepdims=True)
    unit = np.divide(work, norms, out=np.zeros_like(work), where=norms > 0)
    out = np.empty(len(a), dtype=np.float64)
    for s in range(0, len(a), chunk):
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
) -> dict:
    """Cosine-score ``trials`` and summarise as JSON-ready floats.

    Returns ``{"eer", "eer_threshold", "min_dcf": {"p0.01": ..., ...}, "n_trials",
    "n_target", "n_nontarget"}``; EER is a fraction (0.05 = 5 %), minDCF uses c_miss = c_fa = 1.
    """
    labels = np.fromiter((int(t[0]) for t in trials), dtype=np.int64, count=len(trials))
    scores = cosine_scores(emb, index, trials)
    eer, thr = compute_eer(scores, labels)
    n_target = int(labels.sum())
    return {
        "eer": eer,
        "eer_threshold": thr,
        "min_dcf": {f"p{p:g}": compute_min_dcf(scores, labels, p) for p in p_targets},
        "n_trials": len(trials),
        "n_target": n_target,
        "n_nontarget": len(trials) - n_target,
    }
