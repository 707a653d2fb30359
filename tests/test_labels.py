"""Emotion label mappings (ER / ED): which corpus labels take part and what is scored."""

from __future__ import annotations

from pathlib import Path

import pytest

from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.evaluation.labels import EmotionLabels

CONF = Path(__file__).resolve().parents[1] / "conf" / "task"

ER = dict(name="er", classes=["angry", "sad", "happy", "neutral"],
          label_map={"angry": "angry", "sad": "sad", "happy": "happy", "neutral": "neutral", "excited": "happy"})
ED = dict(name="ed", classes=["neutral", "emotional"], label_map=ER["label_map"],
          coarse_map={"angry": "emotional", "sad": "emotional", "happy": "emotional", "neutral": "neutral"})

LABELS = ["angry", "boredom", "sad", "excited", "disgust", "happy", "neutral", None, "fear", "sad"]


def _utts(labels=LABELS) -> list[Utterance]:
    return [Utterance(id=f"u{i}", path=f"{i}.wav", speaker=f"s{i % 3}", label=lab) for i, lab in enumerate(labels)]


def test_er_selection_drops_other_emotions_and_maps_excited():
    task = EmotionLabels(**ER)
    kept, fine = task.select(_utts())
    assert [u.id for u in kept] == ["u0", "u2", "u3", "u5", "u6", "u9"]
    assert fine.tolist() == ["angry", "sad", "happy", "happy", "neutral", "sad"]
    assert task.to_task_labels(fine).tolist() == fine.tolist()  # no coarse map: identity


def test_ed_coarse_mapping():
    task = EmotionLabels(**ED)
    kept, fine = task.select(_utts())
    assert fine.tolist() == ["angry", "sad", "happy", "happy", "neutral", "sad"]
    assert task.to_task_labels(fine).tolist() == ["emotional", "emotional", "emotional", "emotional",
                                                  "neutral", "emotional"]


def test_mismatched_classes_are_refused():
    with pytest.raises(ValueError, match="happy"):
        EmotionLabels("er3", ["angry", "sad", "neutral"], ER["label_map"])  # happy mapped but not declared
    with pytest.raises(ValueError):
        EmotionLabels("er5", ["angry", "sad", "happy", "neutral", "fear"], ER["label_map"])  # fear never mapped
    with pytest.raises(ValueError):
        EmotionLabels("ed", ["neutral", "emotional"], ER["label_map"], {"angry": "emotional"})  # sad/happy unmapped


@pytest.mark.parametrize("name,expected", [("er", ER), ("ed", ED)])
def test_task_configs_instantiate(name, expected):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    task = instantiate(OmegaConf.load(CONF / f"{name}.yaml").labels, _convert_="all")
    assert task.name == expected["name"] and task.classes == expected["classes"]
    assert task.label_map == expected["label_map"]
    assert task.coarse_map == expected.get("coarse_map", {})
