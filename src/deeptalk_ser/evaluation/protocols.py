"""Evaluation protocols: folds of manifest rows, speaker-independent unless declared otherwise.

Protocol classes (``conf/protocol/*.yaml`` instantiates them; ``name`` there names the protocol
in results and split files):

- :class:`LeaveOneGroupOutProtocol` (``loso``): one fold per value of ``group_by`` (speaker, or an
  extra such as IEMOCAP's ``session``); scikit-learn's ``LeaveOneGroupOut`` makes the folds.
- :class:`GroupKFoldProtocol` (``group_kfold``): k folds of whole groups, seeded, optionally
  stratified.
- :class:`FixedSplitProtocol` (``fixed``): given train/test partitions from the manifest's
  ``split`` column (or any other key via ``split_by``, e.g. IEMOCAP sessions).
- :class:`GroupHoldoutProtocol` (``group_holdout``): one seeded random train/test draw of whole
  groups (the CREMA-D paper's intended 70/30 actor split).
- :class:`EmoBoxFoldsProtocol` (``emobox``): EmoBox's published fold files, speaker independence
  read from the speakers each split holds.

The ``*Protocol`` suffix keeps them apart from scikit-learn's splitters of similar names, which
take arrays, not manifest rows, and (for k-fold) deal groups differently.

Every fold passes through :func:`check_disjoint`, which refuses a train/test speaker overlap
unless the protocol declares itself speaker-dependent. Class-balanced under-sampling of the
training fold (the paper's) is a classifier option (``classifier.balance``), not a protocol one.

:func:`write_split_file` records the exact folds of a run (utterance ids per fold) with a
content hash, so that every result names its split.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from sklearn.model_selection import LeaveOneGroupOut, ShuffleSplit

from deeptalk_ser.utils.io import write_text_atomic
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.utils.errors import ConfigError, DataError

SPLIT_FILE_VERSION = 1


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


def _optional_values(utts: Sequence[Utterance], key: str) -> np.ndarray:
    """Like :func:`group_values` but None stays None (rows outside every partition)."""
    core = key in ("speaker", "split", "label", "corpus")
    vals = [getattr(u, key, None) if core else u.extra.get(key) for u in utts]
    return np.array([None if v is None else str(v) for v in vals], dtype=object)


def check_disjoint(fold: Fold, speakers: np.ndarray, speaker_independent: bool) -> list[str]:
    shared = sorted(set(speakers[fold.train]) & set(speakers[fold.test]))
    if shared and speaker_independent:
        raise SpeakerLeakError(
            f"fold {fold.name}: {len(shared)} speaker(s) in both train and test ({shared[:5]}); "
            "use a speaker-disjoint protocol or set protocol.speaker_independent=false explicitly")
    return shared


class Protocol:
    """Base class. ``name`` (optional) renames the protocol in results and split files (a named
    config such as ``iemocap_paper``); ``require`` maps a manifest key to the value every
    utterance must carry (e.g. ``{release: "1.8"}``), so a paper protocol cannot silently run on
    another corpus release."""

    name = "protocol"

    def __init__(self, speaker_independent: bool = True, group_by: str = "speaker", name: str | None = None,
                 require: Mapping[str, Any] | None = None) -> None:
        self.speaker_independent, self.group_by = speaker_independent, group_by
        if name is not None:
            self.name = str(name)
        self.require = {str(k): str(v) for k, v in (require or {}).items()}

    def folds(self, utts: Sequence[Utterance], labels: np.ndarray) -> list[Fold]:
        self.check_requirements(utts)
        return self.make_folds(utts, labels)

    def make_folds(self, utts: Sequence[Utterance], labels: np.ndarray) -> list[Fold]:
        raise NotImplementedError

    def use_manifest(self, utts: Sequence[Utterance]) -> None:
        """The whole prepared manifest, task utterances or not: a protocol that lists utterances by
        id (EmoBox folds) tells an id of another class from an id that does not exist."""

    def check_requirements(self, utts: Sequence[Utterance]) -> None:
        for key, want in self.require.items():
            vals = _optional_values(utts, key)
            bad = sorted({str(v) for v in vals if v != want})
            if bad:
                raise ValueError(f"protocol {self.name} requires {key}={want!r} for every utterance, found "
                                 f"{bad[:5]} (set it on the data loader if your copy is that {key}, "
                                 "or choose another protocol)")

    def describe(self) -> dict:
        return {"name": self.name, **{k: v for k, v in vars(self).items()}}


class LeaveOneGroupOutProtocol(Protocol):
    """One fold per distinct ``group_by`` value (sorted; scikit-learn's ``LeaveOneGroupOut`` makes
    the index sets, the fold name is the group value). ``max_groups`` (None = no limit) refuses
    absurd fold counts, e.g. leave-one-speaker-out on MSP-Podcast, whose thousands of speakers
    (every unknown-speaker utterance its own) call for its official split instead."""

    name = "loso"

    def __init__(self, max_groups: int | None = None, **kw) -> None:
        super().__init__(**kw)
        self.max_groups = max_groups

    def make_folds(self, utts: Sequence[Utterance], labels: np.ndarray) -> list[Fold]:
        groups = group_values(utts, self.group_by)
        uniq = sorted(set(groups))
        if len(uniq) < 2:
            raise ConfigError("protocol", f"leave-one-{self.group_by}-out needs at least 2 {self.group_by} groups, got {uniq}")
        if self.max_groups is not None and len(uniq) > self.max_groups:
            raise ConfigError(
                "protocol.max_groups", f"leave-one-{self.group_by}-out over {len(uniq)} groups would train {len(uniq)} classifiers "
                f"(protocol.max_groups={self.max_groups}); use the corpus's official split (e.g. "
                "protocol=msp_official), protocol=group_kfold, or raise protocol.max_groups")
        dummy = np.zeros((len(groups), 1))
        return [Fold(f"{self.group_by}={groups[test[0]]}", train, test)
                for train, test in LeaveOneGroupOut().split(dummy, groups=groups)]


class GroupKFoldProtocol(Protocol):
    """k folds of whole groups; groups are dealt to folds in a seeded order, optionally
    round-robin within each stratum (e.g. ``stratify_by=gender``) so folds stay balanced.

    Exactly: the distinct groups are sorted, permuted with ``numpy.random.default_rng(seed)``,
    stably sorted by stratum name, and the i-th group of that order goes to fold ``i % k``. Each
    fold's per-stratum count therefore differs from any other fold's by at most one.

    Not scikit-learn's ``GroupKFold(shuffle=True)`` / ``StratifiedGroupKFold``: they deal groups
    otherwise (contiguous chunks; strata of class labels), which would change the published folds."""

    name = "group_kfold"

    def __init__(self, k: int = 5, seed: int = 0, stratify_by: str | None = None, **kw) -> None:
        super().__init__(**kw)
        self.k, self.seed, self.stratify_by = k, seed, stratify_by

    def assign(self, utts: Sequence[Utterance]) -> dict[str, int]:
        groups = group_values(utts, self.group_by)
        strata = group_values(utts, self.stratify_by) if self.stratify_by else np.array(["all"] * len(utts), dtype=object)
        group_stratum: dict[str, str] = {}
        for g, s in zip(groups, strata):
            if group_stratum.setdefault(g, s) != s:
                raise ValueError(f"{self.group_by} {g} has two {self.stratify_by} values ({group_stratum[g]}, {s})")
        uniq = sorted(group_stratum)
        if len(uniq) < self.k:
            raise ConfigError("protocol.k", f"{self.k} folds need at least {self.k} {self.group_by} groups, the data has {len(uniq)}")
        rng = np.random.default_rng(self.seed)
        order = [uniq[i] for i in rng.permutation(len(uniq))]
        order.sort(key=lambda g: group_stratum[g])  # stable: seeded order kept within a stratum
        return {g: i % self.k for i, g in enumerate(order)}

    def make_folds(self, utts: Sequence[Utterance], labels: np.ndarray) -> list[Fold]:
        assign = self.assign(utts)
        fold_of = np.array([assign[g] for g in group_values(utts, self.group_by)])
        return [Fold(f"fold{f}", np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(self.k)]


class FixedSplitProtocol(Protocol):
    """Train on the rows whose ``split_by`` value (default the manifest's ``split``) is in
    ``train_splits``, test on those in ``test_splits``; rows in neither (e.g. MSP-Podcast's
    Development set, kept for tuning) are unused. Values compare as strings, so IEMOCAP
    sessions can be given as integers. ``per_test_split``: one fold per test split (same
    training rows, one score per partition, e.g. Test1 and Test2) instead of one pooled fold."""

    name = "fixed"

    def __init__(self, train_splits: Sequence[Any] = ("train",), test_splits: Sequence[Any] = ("test",),
                 split_by: str = "split", per_test_split: bool = False, **kw) -> None:
        super().__init__(**kw)
        self.train_splits, self.test_splits = [str(s) for s in train_splits], [str(s) for s in test_splits]
        self.split_by, self.per_test_split = split_by, bool(per_test_split)
        both = sorted(set(self.train_splits) & set(self.test_splits))
        if both:
            raise ConfigError("protocol.test_splits", f"fixed split: {both} named in both train_splits and test_splits")

    def _fold_name(self, tests: Sequence[str]) -> str:
        joined = "+".join(tests)
        return joined if self.split_by == "split" else f"{self.split_by}={joined}"

    def make_folds(self, utts: Sequence[Utterance], labels: np.ndarray) -> list[Fold]:
        splits = _optional_values(utts, self.split_by)
        train = np.flatnonzero(np.isin(splits, self.train_splits))
        test_sets = [[s] for s in self.test_splits] if self.per_test_split else [self.test_splits]
        folds = []
        for tests in test_sets:
            test = np.flatnonzero(np.isin(splits, tests))
            if len(train) == 0 or len(test) == 0:
                raise ValueError(f"fixed split ({self.split_by}): {len(train)} train rows in {self.train_splits}, "
                                 f"{len(test)} test rows in {tests}")
            folds.append(Fold(self._fold_name(tests), train, test))
        return folds


class GroupHoldoutProtocol(Protocol):
    """One train/test split of whole groups drawn at random: the CREMA-D paper's intended
    "70/30 split by actor, seed 600", without the paper code's indexing bug (rows are assigned
    by their own speaker, so the split is speaker-disjoint).

    The draw, exactly:

    1. ``population`` = ``groups`` in the order given (the paper: actors 1001..1091 ascending),
       or, when ``groups`` is None, the sorted distinct ``group_by`` values present;
    2. ``n_test = ceil(test_size * len(population))`` (91 actors, 0.3 -> 28 test, 63 train);
    3. ``perm = numpy.random.RandomState(seed).permutation(len(population))``;
    4. test groups = ``population[perm[:n_test]]``, train groups = ``population[perm[n_test:]]``.

    This is the draw of scikit-learn's ``train_test_split(population, test_size=test_size,
    random_state=seed)``, which the paper's code called on ``list(range(1001, 1092))``. Pinning
    ``groups`` keeps the draw fixed when some actors have no rows in a run (a task that drops
    them, a partial copy); a row whose group is not in ``groups`` is an error.

    The draw is scikit-learn's ``ShuffleSplit`` over ``population``, not ``GroupShuffleSplit``
    over the rows: that one sorts and keeps only the groups present, so it would move the draw."""

    name = "group_holdout"

    def __init__(self, test_size: float = 0.3, seed: int = 0, groups: Sequence[Any] | None = None, **kw) -> None:
        super().__init__(**kw)
        if not 0.0 < float(test_size) < 1.0:
            raise ConfigError("protocol.test_size", f"must be in (0, 1), got {test_size}")
        self.test_size, self.seed = float(test_size), int(seed)
        self.groups = None if groups is None else [str(g) for g in groups]
        if self.groups is not None and len(set(self.groups)) != len(self.groups):
            raise ValueError("groups lists a group twice")

    def draw(self, population: Sequence[str]) -> tuple[list[str], list[str]]:
        """(train groups, test groups) of ``population`` (see the class docstring)."""
        n = len(population)
        n_test = math.ceil(self.test_size * n)
        if n < 2 or n_test >= n:
            raise ValueError(f"a {self.test_size:.0%} holdout needs at least 2 {self.group_by} groups with some left "
                             f"for training, got {n}")
        # = RandomState(seed).permutation(n): test perm[:n_test], train perm[n_test:]
        (train, test), = ShuffleSplit(n_splits=1, test_size=n_test, random_state=self.seed).split(np.zeros((n, 1)))
        return [population[i] for i in train], [population[i] for i in test]

    def make_folds(self, utts: Sequence[Utterance], labels: np.ndarray) -> list[Fold]:
        groups = group_values(utts, self.group_by)
        population = self.groups if self.groups is not None else sorted(set(groups))
        unknown = sorted(set(groups) - set(population))
        if unknown:
            raise ValueError(f"{self.group_by} value(s) {unknown[:5]} are not in protocol.groups "
                             f"({len(population)} listed)")
        train_groups, test_groups = self.draw(population)
        train, test = np.flatnonzero(np.isin(groups, train_groups)), np.flatnonzero(np.isin(groups, test_groups))
        if len(train) == 0 or len(test) == 0:
            raise ValueError(f"holdout: {len(train)} train rows, {len(test)} test rows (too few groups present)")
        return [Fold(f"holdout{int(round(100 * self.test_size))}", train, test)]


class EmoBoxFoldsProtocol(Protocol):
    """EmoBox's published folds (``protocol=emobox protocol.folds_dir=<EmoBox>/data/<corpus>``), read
    in EmoBox's own format: ``fold_<k>/<corpus>_train_fold_<k>.jsonl`` and ``..._test_fold_<k>.jsonl``
    (``fold<k>`` also accepted), one JSON object per line with at least ``key`` (``emodb-03a01Wa``,
    i.e. ``<dataset>-<file stem>``) and ``wav`` (``downloads/emodb/wav/03a01Wa.wav``).

    An entry matches the manifest utterance whose id is, in this order, the ``key`` itself, the
    ``key`` without its ``<dataset>-`` prefix, or the stem of ``wav``. An entry no manifest id
    matches is refused (file and line named): a fold that silently lost rows is not EmoBox's fold.
    Entries of manifest utterances outside the task (EmoDB's boredom in a 4-class run) or dropped at
    extraction are left out of that fold.

    Speaker independence is read from the speakers each split actually holds, not assumed (EmoBox's
    EmoDB and CREMA-D folds share speakers): ``speaker_independent`` null declares the protocol
    speaker-dependent if any fold shares a speaker, true refuses such a fold naming the speakers,
    false accepts it."""

    name = "emobox"

    def __init__(self, folds_dir: str | None = None, speaker_independent: bool | None = None, **kw) -> None:
        # independent until the folds are read (null, true) or as declared (false); see make_folds
        super().__init__(speaker_independent=speaker_independent is not False, **kw)
        self.folds_dir = Path(str(folds_dir)) if folds_dir else None
        self.declared = speaker_independent
        self._manifest_ids: set[str] | None = None

    def use_manifest(self, utts: Sequence[Utterance]) -> None:
        self._manifest_ids = {u.id for u in utts}

    def describe(self) -> dict:
        return {"name": self.name, "folds_dir": None if self.folds_dir is None else str(self.folds_dir),
                "speaker_independent": self.declared}

    def fold_files(self) -> list[tuple[str, Path, Path]]:
        """(fold name, train file, test file) per ``fold_<k>`` folder, in the order of k."""
        if self.folds_dir is None:
            raise ConfigError("protocol.folds_dir", "protocol=emobox needs the EmoBox folder of the corpus "
                                                    "(protocol.folds_dir=<EmoBox>/data/<corpus>)")
        if not self.folds_dir.is_dir():
            raise ConfigError("protocol.folds_dir", f"{self.folds_dir}: not a folder")
        dirs = sorted((d for d in self.folds_dir.glob("fold_*") if d.is_dir() and d.name[5:].isdigit()),
                      key=lambda d: int(d.name[5:]))
        if not dirs:
            raise ConfigError("protocol.folds_dir", f"{self.folds_dir}: no fold_<k> folder (EmoBox data/<corpus>)")
        out = []
        for d in dirs:
            k = d.name[5:]
            pair = []
            for side in ("train", "test"):
                found = sorted(d.glob(f"*_{side}_fold_{k}.jsonl")) or sorted(d.glob(f"*_{side}_fold{k}.jsonl"))
                if len(found) != 1:
                    raise ConfigError("protocol.folds_dir", f"{d}: expected one <corpus>_{side}_fold_{k}.jsonl, found "
                                                            f"{[f.name for f in found] or 'none'}")
                pair.append(found[0])
            out.append((f"fold_{k}", pair[0], pair[1]))
        return out

    @staticmethod
    def read_ids(path: Path, known: set[str]) -> list[str]:
        """The manifest ids a fold file lists, in file order (see the class docstring for the match)."""
        ids = []
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                key = str(entry["key"])
            except (ValueError, KeyError, TypeError) as exc:
                raise DataError(path, f"not an EmoBox entry (a JSON object with a 'key'): {exc}", line_no) from None
            prefix = f"{entry.get('dataset')}-"
            tries = [key, key[len(prefix):] if key.startswith(prefix) else None,
                     Path(str(entry.get("wav", ""))).stem or None]
            match = next((t for t in tries if t and t in known), None)
            if match is None:
                raise DataError(path, f"entry {key!r} matches no utterance of the manifest (tried "
                                      f"{', '.join(repr(t) for t in tries if t)})", line_no)
            ids.append(match)
        return ids

    def make_folds(self, utts: Sequence[Utterance], labels: np.ndarray) -> list[Fold]:
        row = {u.id: i for i, u in enumerate(utts)}
        known = self._manifest_ids if self._manifest_ids is not None else set(row)
        speakers = group_values(utts, "speaker")
        folds, shared_any = [], False
        for name, train_file, test_file in self.fold_files():
            train_ids, test_ids = self.read_ids(train_file, known), self.read_ids(test_file, known)
            both = sorted(set(train_ids) & set(test_ids))
            if both:
                raise DataError(test_file, f"{len(both)} utterance(s) also in {train_file.name}, e.g. {both[0]}")
            fold = Fold(name, np.array([row[i] for i in train_ids if i in row], dtype=int),
                        np.array([row[i] for i in test_ids if i in row], dtype=int))
            shared = sorted(set(speakers[fold.train]) & set(speakers[fold.test]))
            if shared and self.declared:
                raise ConfigError("protocol.speaker_independent",
                                  f"{test_file}: EmoBox {name} shares {len(shared)} speaker(s) between train and "
                                  f"test ({', '.join(shared)}); set protocol.speaker_independent=null to run it "
                                  "declared speaker-dependent")
            shared_any |= bool(shared)
            folds.append(fold)
        self.speaker_independent = not shared_any  # declared from the speakers the splits hold
        return folds


# ----------------------------------------------------------------------------------- split files
def split_records(folds: Sequence[Fold], utts: Sequence[Utterance]) -> list[dict[str, Any]]:
    """Per fold its name and the sorted utterance ids on each side (manifest-order independent)."""
    ids = np.array([u.id for u in utts], dtype=object)
    return [{"name": f.name, "train": sorted(ids[f.train].tolist()), "test": sorted(ids[f.test].tolist())}
            for f in folds]


def split_hash(records: Sequence[Mapping[str, Any]]) -> str:
    """``sha256:<hex>`` of the canonical JSON of fold names and train/test ids. It covers the split's
    content only, not the protocol's name or options: two configs that yield the same folds hash
    the same, and one config that yields other folds (another seed, other utterances) does not."""
    canon = [{"name": r["name"], "train": list(r["train"]), "test": list(r["test"])} for r in records]
    blob = json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def write_split_file(path: str | Path, protocol: Protocol, folds: Sequence[Fold], utts: Sequence[Utterance]) -> str:
    """Write the exact folds of a run to ``path`` (JSON: version, protocol name and options,
    hash, counts, and per fold the train and test utterance ids); returns the hash."""
    records = split_records(folds, utts)
    digest = split_hash(records)
    doc = {
        "version": SPLIT_FILE_VERSION,
        "protocol": protocol.name,
        "protocol_config": protocol.describe(),
        "hash": digest,
        "n_utterances": len(utts),
        "n_folds": len(records),
        "folds": [{"name": r["name"], "n_train": len(r["train"]), "n_test": len(r["test"]), **r} for r in records],
    }
    write_text_atomic(path, json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str) + "\n")
    return digest
