"""Paired, speaker-level comparison of emotion runs that scored the same utterances in the same folds.

Two setups scored on one corpus of ten speakers differ by a few UA points from noise alone, so a
sweep's ranking is a claim only when a paired test supports it. The unit of the test is the
speaker (the utterances of one speaker are not independent), and the pairing is exact: both runs
predicted every utterance in the same fold. The test is a sign-flip permutation over speakers:
pooled UA is a sum of per-speaker contributions (each speaker's correct predictions of class c
divided by the number of class-c utterances and the number of classes), so swapping the two runs'
predictions for a subset of speakers is a relabelling that leaves the null hypothesis (the runs
are exchangeable) unchanged. ``scipy.stats.permutation_test`` (``permutation_type="samples"``)
does the swapping: every one of the 2^n assignments when that is at most ``n_resamples`` (exact for
up to 13 speakers at the default), random ones otherwise. Across a sweep the p-values of the jobs
tested against the best are Holm-corrected (family-wise error at ``alpha``).
Design notes and the checks of the null rate: docs/intervals.md#paired-comparisons.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from deeptalk_ser.utils.errors import DataError

#: written by every emotion run (runs/emotion.py write_predictions)
PREDICTIONS = "predictions.csv"
COLUMNS = ("id", "speaker", "fold", "true", "pred")


@dataclass(frozen=True)
class ScoredRun:
    """One run's predictions, sorted by utterance id (all columns as strings)."""

    name: str
    path: Path
    ids: np.ndarray
    speakers: np.ndarray
    folds: np.ndarray
    true: np.ndarray
    pred: np.ndarray

    @cached_property
    def classes(self) -> list[str]:
        return sorted(set(self.true.tolist()))

    @cached_property
    def ua(self) -> float:
        """Pooled unweighted accuracy (mean recall over the true classes), as in ``results.json``."""
        return float(sum(self.contributions(sorted(set(self.speakers.tolist())))))

    @cached_property
    def design(self) -> str:
        """Hash of what both runs of a pair must share: utterances, speakers, folds and true labels."""
        h = hashlib.blake2b(digest_size=8)
        for col in (self.ids, self.speakers, self.folds, self.true):
            h.update("\x1f".join(col.tolist()).encode("utf-8", "surrogateescape") + b"\x1e")
        return h.hexdigest()

    def contributions(self, speakers: Sequence[str]) -> np.ndarray:
        """Each speaker's share of the pooled UA (the shares sum to UA): correct predictions of class
        c over the number of class-c utterances, averaged over the classes. ``speakers``: every
        speaker of the run, sorted."""
        classes = np.asarray(self.classes)
        cls = np.searchsorted(classes, self.true)
        n_c = np.bincount(cls, minlength=len(classes)).astype(float)
        order = np.asarray(speakers)
        spk = np.searchsorted(order, self.speakers)
        weights = (self.true == self.pred) / n_c[cls]
        return np.bincount(spk, weights=weights, minlength=len(order)) / len(classes)


def read_scored_run(run_dir: str | Path, name: str | None = None) -> ScoredRun:
    """The ``predictions.csv`` of a finished emotion run; a missing or malformed file is a
    :class:`DataError` naming it."""
    import pandas as pd

    run_dir = Path(run_dir)
    path = run_dir / PREDICTIONS if run_dir.is_dir() else run_dir
    if not path.is_file():
        raise DataError(path, "missing: only emotion runs (task=er|ed) write predictions.csv, and runs made "
                              "before it existed must be run again to be compared")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, OSError) as exc:
        raise DataError(path, f"not a predictions table ({exc})") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(path, f"lacks the column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})")
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise DataError(path, f"utterance id {dup.iloc[0]!r} appears more than once", line=int(dup.index[0]) + 2)
    if df.empty:
        raise DataError(path, "holds no predictions")
    df = df.sort_values("id", kind="stable")
    cols = {c: df[c].to_numpy(dtype=str) for c in COLUMNS}
    return ScoredRun(name=name or (path.parent.name if path.parent.name else str(path)), path=path,
                     ids=cols["id"], speakers=cols["speaker"], folds=cols["fold"], true=cols["true"], pred=cols["pred"])


def why_not_paired(a: ScoredRun, b: ScoredRun) -> str | None:
    """None when ``a`` and ``b`` scored the same utterances of the same speakers, with the same true
    labels, in the same folds; otherwise the first difference, in words."""
    if a.design == b.design:
        return None
    only_a, only_b = np.setdiff1d(a.ids, b.ids), np.setdiff1d(b.ids, a.ids)
    if len(only_a) or len(only_b):
        return (f"they scored different utterances ({len(only_a)} only in {a.name}, {len(only_b)} only in "
                f"{b.name}; e.g. {(only_a.tolist() + only_b.tolist())[0]!r})")
    for what, col in (("speaker", "speakers"), ("true label", "true"), ("fold", "folds")):
        diff = np.flatnonzero(getattr(a, col) != getattr(b, col))
        if len(diff):
            i = diff[0]
            return (f"{len(diff)} utterances have another {what} (e.g. {a.ids[i]!r}: {getattr(a, col)[i]!r} in "
                    f"{a.name}, {getattr(b, col)[i]!r} in {b.name})")
    return "their predictions tables differ in layout"  # unreachable for tables read by read_scored_run


@dataclass(frozen=True)
class PairedTest:
    """UA of ``a`` minus UA of ``b``, the two-sided p-value of the sign-flip test over speakers."""

    diff: float
    p_value: float
    n_speakers: int
    n_permutations: int
    exact: bool


def paired_ua_test(a: ScoredRun, b: ScoredRun, n_resamples: int = 9999, seed: int = 0) -> PairedTest:
    """Sign-flip permutation test of UA(a) - UA(b) over speakers; refuses runs that are not a pair
    (:class:`DataError` naming ``b``'s file) and fewer than two speakers (no test exists)."""
    from scipy.stats import permutation_test

    reason = why_not_paired(a, b)
    if reason:
        raise DataError(b.path, f"cannot be compared with {a.path}: {reason}")
    speakers = sorted(set(a.speakers.tolist()))
    if len(speakers) < 2:
        raise DataError(b.path, f"{len(speakers)} speaker: a speaker-level paired test needs at least 2")
    xa, xb = a.contributions(speakers), b.contributions(speakers)

    def total_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.sum(x - y, axis=axis)

    res = permutation_test((xa, xb), total_diff, permutation_type="samples", vectorized=True,
                           n_resamples=n_resamples, alternative="two-sided", rng=np.random.default_rng(seed))
    exact = 2 ** len(speakers) <= n_resamples
    return PairedTest(diff=float(res.statistic), p_value=float(res.pvalue), n_speakers=len(speakers),
                      n_permutations=int(len(res.null_distribution)), exact=exact)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment (controls the family-wise error rate; valid under any dependence
    between the tests, which share the best run). scipy offers only Benjamini-Hochberg."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order]).clip(max=1.0)
    out = np.empty(m)
    out[order] = adjusted
    return out


@dataclass(frozen=True)
class VersusBest:
    """A run's place against the best run it can be paired with (``mark``: ``best``,
    ``indistinguishable`` (Holm p >= alpha) or ``worse``; ``alone`` when no other run scored the
    same utterances in the same folds)."""

    best: str | None
    mark: str
    diff: float | None = None
    p_raw: float | None = None
    p_vs_best: float | None = None


def compare_to_best(runs: Sequence[ScoredRun], alpha: float = 0.05, n_resamples: int = 9999,
                    seed: int = 0) -> dict[str, VersusBest]:
    """Every run against the best (highest UA) of the runs it pairs with; runs that share no design
    with any other are ``alone``. Holm over the tests within each group of paired runs."""
    groups: dict[str, list[ScoredRun]] = {}
    for r in runs:
        groups.setdefault(r.design, []).append(r)
    out: dict[str, VersusBest] = {}
    for members in groups.values():
        if len(members) == 1:
            out[members[0].name] = VersusBest(best=None, mark="alone")
            continue
        if len(set(members[0].speakers.tolist())) < 2:  # e.g. the authors' arrays: no speaker ids
            out.update({r.name: VersusBest(best=None, mark="untested: fewer than 2 speakers") for r in members})
            continue
        best = max(members, key=lambda r: r.ua)  # first of equals: job order
        others = [r for r in members if r is not best]
        tests = [paired_ua_test(best, r, n_resamples, seed) for r in others]
        adjusted = holm([t.p_value for t in tests])
        out[best.name] = VersusBest(best=best.name, mark="best")
        for r, t, p in zip(others, tests, adjusted):
            out[r.name] = VersusBest(best=best.name, mark="worse" if p < alpha else "indistinguishable",
                                     diff=-t.diff, p_raw=t.p_value, p_vs_best=float(p))
    return out


def compare_run_dirs(job_dirs: Mapping[str, Path], alpha: float = 0.05, n_resamples: int = 9999,
                     seed: int = 0) -> dict[str, VersusBest]:
    """:func:`compare_to_best` over the runs (name -> folder) that wrote ``predictions.csv``;
    runs without one (verification, analyses, failed jobs) are left out of the result."""
    runs = [read_scored_run(d, name) for name, d in job_dirs.items() if (Path(d) / PREDICTIONS).is_file()]
    return compare_to_best(runs, alpha, n_resamples, seed) if runs else {}
