"""Emotion tasks (ER/ED label selection and mapping) and evaluation protocols (folds)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.evaluation.protocols import (FixedSplit, Fold, GroupKFold, LeaveOneGroupOut, SpeakerLeakError,
                                    check_disjoint, group_values)
from deeptalk_ser.evaluation.labels import make_task

CONF = Path(__file__).resolve().parents[1] / "conf" / "task"

ER = dict(name="er", classes=["angry", "sad", "happy", "neutral"],
          label_map={"angry": "angry", "sad": "sad", "happy": "happy", "neutral": "neutral", "excited": "happy"})
ED = dict(name="ed", classes=["neutral", "emotional"], label_map=ER["label_map"],
          coarse_map={"angry": "emotional", "sad": "emotional", "happy": "emotional", "neutral": "neutral"})

LABELS = ["angry", "boredom", "sad", "excited", "disgust", "happy", "neutral", None, "fear", "sad"]


def _utts(labels=LABELS) -> list[Utterance]:
    return [Utterance(id=f"u{i}", path=f"{i}.wav", speaker=f"s{i % 3}", label=lab) for i, lab in enumerate(labels)]


# ------------------------------------------------------------------------ tasks


def test_er_selection_drops_other_emotions_and_maps_excited():
    task = make_task(**ER)
    kept, fine = task.select(_utts())
    assert [u.id for u in kept] == ["u0", "u2", "u3", "u5", "u6", "u9"]
    assert fine.tolist() == ["angry", "sad", "happy", "happy", "neutral", "sad"]
    assert task.to_task_labels(fine).tolist() == fine.tolist()  # no coarse map: identity
    assert task.fine_classes == ["angry", "sad", "happy", "neutral"]


def test_ed_coarse_mapping():
    task = make_task(**ED)
    kept, fine = task.select(_utts())
    assert fine.tolist() == ["angry", "sad", "happy", "happy", "neutral", "sad"]
    assert task.to_task_labels(fine).tolist() == ["emotional", "emotional", "emotional", "emotional",
                                                  "neutral", "emotional"]
    assert task.fine_classes == ["angry", "sad", "happy", "neutral"]


def test_mismatched_classes_are_refused():
    with pytest.raises(ValueError, match="happy"):
        make_task("er3", ["angry", "sad", "neutral"], ER["label_map"])  # happy mapped but not declared
    with pytest.raises(ValueError):
        make_task("er5", ["angry", "sad", "happy", "neutral", "fear"], ER["label_map"])  # fear never mapped
    with pytest.raises(ValueError):
        make_task("ed", ["neutral", "emotional"], ER["label_map"], {"angry": "emotional"})  # sad/happy unmapped


@pytest.mark.parametrize("name,expected", [("er", ER), ("ed", ED)])
def test_task_configs_instantiate(name, expected):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    task = instantiate(OmegaConf.load(CONF / f"{name}.yaml"), _convert_="all")
    assert task.name == expected["name"] and task.classes == expected["classes"]
    assert task.label_map == expected["label_map"]
    assert task.coarse_map == expected.get("coarse_map", {})


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
    folds = LeaveOneGroupOut().folds(utts, np.array(["sad"] * 12))
    assert [f.name for f in folds] == ["speaker=a", "speaker=b", "speaker=c"]
    _rows_once(folds, 12)
    assert folds[1].test.tolist() == [4, 5, 6, 7]
    for f in folds:
        assert check_disjoint(f, spk, speaker_independent=True) == []


def test_loso_by_extra_key_session():
    utts = _speaker_utts(TEN, per_speaker=1)
    folds = LeaveOneGroupOut(group_by="session").folds(utts, np.array(["sad"] * 10))
    assert len(folds) == 5 and folds[0].test.tolist() == [0, 1]  # s0, s1 -> session S0
    _rows_once(folds, 10)


def test_loso_needs_two_groups():
    with pytest.raises(ValueError, match="at least 2"):
        LeaveOneGroupOut().folds(_speaker_utts({"a": "m"}), np.array(["sad"] * 3))


def test_group_value_missing_is_an_error():
    with pytest.raises(ValueError, match="u0"):
        group_values(_utts(), "gender")


def test_group_kfold_speaker_disjoint_k_folds():
    utts = _speaker_utts(TEN)
    spk = group_values(utts, "speaker")
    folds = GroupKFold(k=5, seed=3).folds(utts, np.array(["sad"] * 30))
    assert len(folds) == 5
    _rows_once(folds, 30)
    for f in folds:
        assert not set(spk[f.train]) & set(spk[f.test])
        assert len(set(spk[f.test])) == 2  # 10 speakers dealt evenly over 5 folds
        check_disjoint(f, spk, speaker_independent=True)


def test_group_kfold_seeded_determinism():
    utts = _speaker_utts(TEN)
    a = GroupKFold(k=5, seed=7).assign(utts)
    b = GroupKFold(k=5, seed=7).assign(list(utts))
    assert a == b
    others = [GroupKFold(k=5, seed=s).assign(utts) for s in range(1, 6)]
    assert any(o != a for o in others)  # the seed matters


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_group_kfold_stratify_by_gender_balances_folds(seed):
    utts = _speaker_utts(TEN)
    gender = {u.speaker: u.extra["gender"] for u in utts}
    assign = GroupKFold(k=5, seed=seed, stratify_by="gender").assign(utts)
    for fold in range(5):
        in_fold = [s for s, f in assign.items() if f == fold]
        assert sorted(gender[s] for s in in_fold) == ["f", "m"]


def test_group_kfold_stratify_uneven_strata():
    spk = {f"s{i}": ("f" if i < 6 else "m") for i in range(10)}  # 6 f + 4 m, 2 folds
    utts = _speaker_utts(spk, per_speaker=1)
    assign = GroupKFold(k=2, seed=0, stratify_by="gender").assign(utts)
    for fold in range(2):
        assert Counter(spk[s] for s, f in assign.items() if f == fold) == {"f": 3, "m": 2}


def test_group_kfold_needs_k_groups():
    with pytest.raises(ValueError, match="5 folds"):
        GroupKFold(k=5).folds(_speaker_utts({"a": "m", "b": "f", "c": "m"}), np.array(["sad"] * 9))


def test_fixed_split():
    utts = _speaker_utts({"s0": "m", "s1": "f", "s2": "m", "s3": "f"}, per_speaker=2, with_split=True)
    (fold,) = FixedSplit().folds(utts, np.array(["sad"] * 8))
    assert fold.name == "test"
    assert fold.test.tolist() == [0, 1, 2, 3] and fold.train.tolist() == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="0 test rows"):
        FixedSplit(test_splits=["dev"]).folds(utts, np.array(["sad"] * 8))


def test_check_disjoint_raises_or_reports():
    speakers = np.array(["a", "a", "b", "b", "c"], dtype=object)
    fold = Fold("f", train=np.array([0, 2, 4]), test=np.array([1, 3]))  # a and b on both sides
    with pytest.raises(SpeakerLeakError, match="2 speaker"):
        check_disjoint(fold, speakers, speaker_independent=True)
    assert check_disjoint(fold, speakers, speaker_independent=False) == ["a", "b"]
    clean = Fold("g", train=np.array([0, 1, 4]), test=np.array([2, 3]))
    assert check_disjoint(clean, speakers, speaker_independent=True) == []
