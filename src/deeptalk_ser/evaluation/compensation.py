"""Emotion compensation for speaker verification: transforms learned on emotional speech of
speakers other than the test speakers, applied to every embedding before cosine scoring.

* :class:`NAP` (nuisance attribute projection): the top-``k`` directions of within-speaker
  emotion variation (each speaker's per-emotion mean minus that speaker's mean) are projected
  out, so moving a speaker's voice along them no longer moves the score.
* :class:`SpeakerLDA`: linear discriminant analysis on speaker labels (scikit-learn's, shrinkage
  covariance): keeps the directions that separate speakers relative to within-speaker spread,
  emotion included when the fit data is emotional speech.

Both take and return L2-normalised rows (cosine scoring normalises again). Fitting on the test
speakers would let the transform see what it is judged on: :func:`check_disjoint` refuses that.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from deeptalk_ser.evaluation.verification import unit_rows
from deeptalk_ser.utils.errors import ConfigError

METHODS = ("none", "nap", "lda")


class NAP(TransformerMixin, BaseEstimator):
    """Project out the top-``k`` within-speaker emotion directions (``fit(X, speakers, emotions)``)."""

    def __init__(self, k: int = 2) -> None:
        self.k = k

    def fit(self, X: np.ndarray, speakers: Sequence[Any], emotions: Sequence[Any]) -> "NAP":
        if self.k < 1:
            raise ConfigError("compensation.k", f"must be >= 1, got {self.k}")
        U, spk, emo = unit_rows(X), np.asarray(speakers, dtype=object), np.asarray(emotions, dtype=object)
        if len(U) != len(spk) or len(U) != len(emo):
            raise ValueError(f"{len(U)} rows, {len(spk)} speakers, {len(emo)} emotions")
        offsets = []  # one row per (speaker, emotion): its mean minus the speaker's mean
        for s in np.unique(spk):
            rows = spk == s
            mean_s = U[rows].mean(axis=0)
            offsets += [U[rows & (emo == e)].mean(axis=0) - mean_s for e in np.unique(emo[rows])]
        D = np.asarray(offsets)
        if len(D) <= self.k:
            raise ConfigError("compensation.k", f"{len(D)} speaker-emotion means cannot give {self.k} directions")
        _, sv, vt = np.linalg.svd(D, full_matrices=False)
        self.components_ = vt[: self.k]
        self.explained_ = (sv[: self.k] ** 2 / np.sum(sv ** 2)).tolist()
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        U = unit_rows(X)
        return unit_rows(U - (U @ self.components_.T) @ self.components_)


class SpeakerLDA(TransformerMixin, BaseEstimator):
    """LDA on speaker labels (``fit(X, speakers, emotions)``; emotions unused), shrinkage
    covariance so that a few hundred utterances can fit a few hundred dimensions."""

    def __init__(self, n_components: int | None = None) -> None:
        self.n_components = n_components

    def fit(self, X: np.ndarray, speakers: Sequence[Any], emotions: Sequence[Any] | None = None) -> "SpeakerLDA":
        n_spk = len(set(speakers))
        if n_spk < 2:
            raise ConfigError("compensation.data", f"LDA needs at least 2 speakers, got {n_spk}")
        dims = n_spk - 1 if self.n_components is None else min(int(self.n_components), n_spk - 1)
        self.lda_ = LinearDiscriminantAnalysis(n_components=dims, solver="eigen", shrinkage="auto")
        self.lda_.fit(unit_rows(X), np.asarray(speakers, dtype=object))
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return unit_rows(self.lda_.transform(unit_rows(X)))


def build_compensation(method: str, k: int = 2, n_components: int | None = None) -> NAP | SpeakerLDA | None:
    """The transform of ``compensation.method`` (``None`` for ``none``)."""
    if method == "none":
        return None
    if method == "nap":
        return NAP(k=k)
    if method == "lda":
        return SpeakerLDA(n_components=n_components)
    raise ConfigError("compensation.method", f"{method!r} is not one of {list(METHODS)}")


def check_disjoint(fit_speakers: Sequence[Any], test_speakers: Sequence[Any]) -> None:
    """Refuse a compensation fitted on any test speaker (it would have seen the voices it is judged on)."""
    shared = sorted(set(map(str, fit_speakers)) & set(map(str, test_speakers)))
    if shared:
        raise ConfigError("compensation.data", f"fit and test speakers overlap: {shared[:10]}")


def split_speakers(speakers: Sequence[Any], fit_fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """(fit speakers, test speakers): a seeded speaker-disjoint split, both sides non-empty."""
    uniq = sorted(set(speakers), key=str)
    if len(uniq) < 3:
        raise ConfigError("compensation.data", f"{len(uniq)} speakers cannot be split into fit and test speakers "
                                               "(verification needs 2 test speakers)")
    if not 0.0 < fit_fraction < 1.0:
        raise ConfigError("compensation.fit_fraction", f"must be in (0, 1), got {fit_fraction}")
    order = np.random.default_rng(seed).permutation(len(uniq))
    n_fit = int(min(max(1, round(fit_fraction * len(uniq))), len(uniq) - 2))
    return [uniq[i] for i in order[:n_fit]], [uniq[i] for i in order[n_fit:]]
