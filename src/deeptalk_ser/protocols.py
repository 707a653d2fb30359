"""Evaluation protocols: folds of manifest rows, speaker-independent unless declared otherwise.

``loso`` (leave one group out), ``group_kfold`` (k group-disjoint folds, optionally
stratified), ``fixed`` (given train/test splits). Every fold passes through
:func:`check_disjoint`, which refuses a train/test speaker overlap unless the protocol declares
itself speaker-dependent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .manifest import Utterance


class SpeakerLeakError(ValueError):
    """A fold shares speakers between train and test in a speaker-independent protocol."""


@dataclass
class Fold:
    name: str
    train: np.ndarray  # row indices into the task's utterance list
    test: np.ndarray


def group_values(utts: Sequence[Utterance], key: str) -> np.ndarray:
    """The grouping value per utterance: a core field (speaker, split) or a corpus extra (session)."""
    vals = []
    for u in utts:
        v = getattr(u, key, None) if key in ("speaker", "split", "label", "corpus") else u.extra.get(key)
        if v is None:
            raise ValueError(f"utterance {u.id} has no {key!r} to group by")
        vals.append(str(v))
    return np.array(vals, dtype=object)


def check_disjoint(fold: Fold, speakers: np.ndarray, speaker_independent: bool) -> list[str]:
    shared = sorted(set(speakers[fold.train]) & set(speakers[fold.test]))
    if shared and speaker_independent:
        raise SpeakerLeakError(
            f"fold {fold.name}: {len(shared)} speaker(s) in both train and test ({shared[:5]}); "
            "use a speaker-disjoint protocol or set protocol.speaker_independent=false explicitly")
    return shared


class Protocol:
    name = "protocol"

    def __init__(self, speaker_independent: bool = True, group_by: str = "speaker") -> None:
        self.speaker_independent, self.group_by = speaker_independent, group_by

    def folds(self, utts: Sequence[Utterance], labels: np.ndarray) -> list[Fold]:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, **{k: v for k, v in vars(self).items()}}


class LeaveOneGroupOut(Protocol):
    name = "loso"

    def folds(self, utts: Sequence[Utterance], labels: np.ndarray) -> list[Fold]:
        groups = group_values(utts, self.group_by)
        uniq = sorted(set(groups))
        if len(uniq) < 2:
            raise ValueError(f"leave-one-{self.group_by}-out needs at least 2 groups, got {uniq}")
        return [Fold(f"{self.group_by}={g}", np.flatnonzero(groups != g), np.flatnonzero(groups == g)) for g in uniq]


class GroupKFold(Protocol):
    """k folds of whole groups; groups are dealt to folds in a seeded order, optionally
    round-robin within each stratum (e.g. ``stratify_by=gender``) so folds stay balanced."""

    name = "group_kfold"

    def __init__(self, k: int = 5, seed: int = 0, stratify_by: str | None = None, **kw) -> None:
        super().__init__(**kw)
        self.k, self.seed, self.stratify_by = k, seed, stratify_by

    def assign(self, utts: Sequence[Utterance]) -> dict[str, int]:
        groups = group_values(utts, self.group_by)
        strata = group_values(utts, self.stratify_by) if self.stratify_by else np.array(["all"] * len(utts), dtype=object)
        group_stratum = dict(zip(groups, strata))
        uniq = sorted(group_stratum)
        if len(uniq) < self.k:
            raise ValueError(f"{self.k} folds need at least {self.k} {self.group_by} groups, got {len(uniq)}")
        rng = np.random.default_rng(self.seed)
        order = [uniq[i] for i in rng.permutation(len(uniq))]
        order.sort(key=lambda g: group_stratum[g])  # stable: seeded order kept within a stratum
        return {g: i % self.k for i, g in enumerate(order)}

    def folds(self, utts: Sequence[Utterance], labels: np.ndarray) -> list[Fold]:
        assign = self.assign(utts)
        fold_of = np.array([assign[g] for g in group_values(utts, self.group_by)])
        return [Fold(f"fold{f}", np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(self.k)]


class FixedSplit(Protocol):
    """Train on the manifest rows whose ``split`` is in ``train_splits``, test on ``test_splits``."""

    name = "fixed"

    def __init__(self, train_splits: Sequence[str] = ("train",), test_splits: Sequence[str] = ("test",), **kw) -> None:
        super().__init__(**kw)
        self.train_splits, self.test_splits = list(train_splits), list(test_splits)

    def folds(self, utts: Sequence[Utterance], labels: np.ndarray) -> list[Fold]:
        splits = np.array([u.split for u in utts], dtype=object)
        train, test = np.flatnonzero(np.isin(splits, self.train_splits)), np.flatnonzero(np.isin(splits, self.test_splits))
        if len(train) == 0 or len(test) == 0:
            raise ValueError(f"fixed split: {len(train)} train rows in {self.train_splits}, {len(test)} test rows in {self.test_splits}")
        return [Fold("+".join(self.test_splits), train, test)]
