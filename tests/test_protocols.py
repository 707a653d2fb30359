"""Evaluation protocols: folds, speaker-disjointness checks, split files."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from sklearn import model_selection

from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.evaluation.protocols import (FixedSplitProtocol, Fold, GroupHoldoutProtocol, GroupKFoldProtocol,
                                               LeaveOneGroupOutProtocol, SpeakerLeakError, check_disjoint, group_values)

LABELS = ["angry", "boredom", "sad", "excited", "disgust", "happy", "neutral", None, "fear", "sad"]


def _utts(labels=LABELS) -> list[Utterance]:
    return [Utterance(id=f"u{i}", path=f"{i}.wav", speaker=f"s{i % 3}", label=lab) for i, lab in enumerate(labels)]


# -------------------------------------------------------------------- protocols


def _speaker_utts(spk_gender: dict[str, str], per_speaker: int = 3, with_split: bool = False) -> list[Utterance]:
    utts = []
    for k, (spk, g) in enumerate(spk_gender.items()):
        for j in range(per_speaker):
            utts.append(Utterance(id=f"{spk}_{j}", path="x.wav", speaker=spk, label="sad",
                                  split=("test" if spk in ("s0", "s1") else "train") if with_split else None,
                                  extra={"gender": g, "session": f"S{k // 2}"}))
    return utts


TEN = {f"s{i}": ("f" if i % 2 else "m") for i in range(10)}  # 5 m (even) + 5 f (odd)


def _rows_once(folds, n):
    counts = Counter(int(r) for f in folds for r in f.test)
    assert sorted(counts) == list(range(n)) and set(counts.values()) == {1}
    for f in folds:
        assert sorted(np.concatenate([f.train, f.test]).tolist()) == list(range(n))


def test_loso_each_row_tested_once_and_disjoint():
    utts = _speaker_utts({"a": "m", "b": "f", "c": "f"}, per_speaker=4)
    spk = group_values(utts, "speaker")
    folds = LeaveOneGroupOutProtocol().folds(utts, np.array(["sad"] * 12))
    assert [f.name for f in folds] == ["speaker=a", "speaker=b", "speaker=c"]
    _rows_once(folds, 12)
    assert folds[1].test.tolist() == [4, 5, 6, 7]
    for f in folds:
        assert check_disjoint(f, spk, speaker_independent=True) == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loso_matches_sklearn_leave_one_group_out(seed):
    rng = np.random.default_rng(seed)
    spk = [f"s{int(i)}" for i in rng.integers(0, 7, 60)]  # unsorted, uneven groups
    utts = [Utterance(id=f"u{i}", path="x.wav", speaker=s, label="sad") for i, s in enumerate(spk)]
    folds = LeaveOneGroupOutProtocol().folds(utts, np.array(["sad"] * 60))
    ref = list(model_selection.LeaveOneGroupOut().split(np.zeros((60, 1)), groups=np.array(spk)))
    assert [f.name for f in folds] == [f"speaker={s}" for s in sorted(set(spk))]
    assert len(folds) == len(ref)
    for f, (train, test) in zip(folds, ref):
        np.testing.assert_array_equal(f.train, train)
        np.testing.assert_array_equal(f.test, test)
        assert {spk[i] for i in f.test} == {f.name.split("=")[1]}


def test_loso_by_extra_key_session():
    utts = _speaker_utts(TEN, per_speaker=1)
    folds = LeaveOneGroupOutProtocol(group_by="session").folds(utts, np.array(["sad"] * 10))
    assert len(folds) == 5 and folds[0].test.tolist() == [0, 1]  # s0, s1 -> session S0
    _rows_once(folds, 10)


def test_loso_needs_two_groups():
    with pytest.raises(ValueError, match="at least 2"):
        LeaveOneGroupOutProtocol().folds(_speaker_utts({"a": "m"}), np.array(["sad"] * 3))


def test_group_value_missing_is_an_error():
    with pytest.raises(ValueError, match="u0"):
        group_values(_utts(), "gender")


def test_group_kfold_speaker_disjoint_k_folds():
    utts = _speaker_utts(TEN)
    spk = group_values(utts, "speaker")
    folds = GroupKFoldProtocol(k=5, seed=3).folds(utts, np.array(["sad"] * 30))
    assert len(folds) == 5
    _rows_once(folds, 30)
    for f in folds:
        assert not set(spk[f.train]) & set(spk[f.test])
        assert len(set(spk[f.test])) == 2  # 10 speakers dealt evenly over 5 folds
        check_disjoint(f, spk, speaker_independent=True)


def test_group_kfold_seeded_determinism():
    utts = _speaker_utts(TEN)
    a = GroupKFoldProtocol(k=5, seed=7).assign(utts)
    b = GroupKFoldProtocol(k=5, seed=7).assign(list(utts))
    assert a == b
    others = [GroupKFoldProtocol(k=5, seed=s).assign(utts) for s in range(1, 6)]
    assert any(o != a for o in others)  # the seed matters


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_group_kfold_stratify_by_gender_balances_folds(seed):
    utts = _speaker_utts(TEN)
    gender = {u.speaker: u.extra["gender"] for u in utts}
    assign = GroupKFoldProtocol(k=5, seed=seed, stratify_by="gender").assign(utts)
    for fold in range(5):
        in_fold = [s for s, f in assign.items() if f == fold]
        assert sorted(gender[s] for s in in_fold) == ["f", "m"]


def test_group_kfold_stratify_uneven_strata():
    spk = {f"s{i}": ("f" if i < 6 else "m") for i in range(10)}  # 6 f + 4 m, 2 folds
    utts = _speaker_utts(spk, per_speaker=1)
    assign = GroupKFoldProtocol(k=2, seed=0, stratify_by="gender").assign(utts)
    for fold in range(2):
        assert Counter(spk[s] for s, f in assign.items() if f == fold) == {"f": 3, "m": 2}


def test_group_kfold_needs_k_groups():
    with pytest.raises(ValueError, match="5 folds"):
        GroupKFoldProtocol(k=5).folds(_speaker_utts({"a": "m", "b": "f", "c": "m"}), np.array(["sad"] * 9))


def test_fixed_split():
    utts = _speaker_utts({"s0": "m", "s1": "f", "s2": "m", "s3": "f"}, per_speaker=2, with_split=True)
    (fold,) = FixedSplitProtocol().folds(utts, np.array(["sad"] * 8))
    assert fold.name == "test"
    assert fold.test.tolist() == [0, 1, 2, 3] and fold.train.tolist() == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="0 test rows"):
        FixedSplitProtocol(test_splits=["dev"]).folds(utts, np.array(["sad"] * 8))


def test_group_holdout_is_train_test_split_of_the_population():
    from sklearn.model_selection import train_test_split

    population = [str(a) for a in range(1001, 1092)]
    train, test = GroupHoldoutProtocol(test_size=0.3, seed=600).draw(population)
    ref_train, ref_test = train_test_split(population, test_size=0.3, random_state=600)
    assert (train, test) == (ref_train, ref_test) and (len(train), len(test)) == (63, 28)
    perm = np.random.RandomState(600).permutation(91)  # the documented draw
    assert test == [population[i] for i in perm[:28]] and train == [population[i] for i in perm[28:]]


def test_group_holdout_pinned_groups_keep_the_draw_when_groups_are_absent():
    spk = {f"s{i}": "m" for i in range(10)}
    utts = _speaker_utts(spk, per_speaker=2)
    pinned = [f"s{i}" for i in range(12)][::-1]  # given order kept, two groups without rows
    proto = GroupHoldoutProtocol(test_size=0.25, seed=4, groups=pinned)
    train_groups, test_groups = proto.draw(pinned)
    (fold,) = proto.folds(utts, np.array(["sad"] * 20))
    spk_arr = group_values(utts, "speaker")
    assert set(spk_arr[fold.test]) == set(test_groups) & set(spk)
    assert set(spk_arr[fold.train]) == set(train_groups) & set(spk)
    with pytest.raises(ValueError, match="not in protocol.groups"):
        GroupHoldoutProtocol(groups=pinned[:5]).folds(utts, np.array(["sad"] * 20))


def test_check_disjoint_raises_or_reports():
    speakers = np.array(["a", "a", "b", "b", "c"], dtype=object)
    fold = Fold("f", train=np.array([0, 2, 4]), test=np.array([1, 3]))  # a and b on both sides
    with pytest.raises(SpeakerLeakError, match="2 speaker"):
        check_disjoint(fold, speakers, speaker_independent=True)
    assert check_disjoint(fold, speakers, speaker_independent=False) == ["a", "b"]
    clean = Fold("g", train=np.array([0, 1, 4]), test=np.array([2, 3]))
    assert check_disjoint(clean, speakers, speaker_independent=True) == []
