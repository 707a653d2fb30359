"""The emotion-shift analysis (paper's Fig. 1) on hand-made embeddings, and end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from deeptalk_ser.evaluation.emotion_shift import emotion_shift
from deeptalk_ser.data.manifest import Utterance


def _u(i: str, spk: str, emo: str, text: str) -> Utterance:
    return Utterance(id=i, path="x", speaker=spk, label=emo, extra={"text": text})


def test_scores_and_baselines_by_hand() -> None:
    # speaker A: neutral t1 = e0, neutral t2 = e0 (genuine 1.0), angry t1 = e1 (neutral-angry t1: cos 0)
    # speaker B: neutral t1 = (e0+e1)/sqrt2 -> impostor with A's two neutrals: cos 1/sqrt2 each
    utts = [_u("a1", "A", "neutral", "t1"), _u("a2", "A", "neutral", "t2"), _u("a3", "A", "angry", "t1"),
            _u("b1", "B", "neutral", "t1")]
    emb = np.array([[1, 0], [1, 0], [0, 1], [1, 1]], dtype=float)
    res = emotion_shift(utts, emb, ["neutral", "angry"])
    assert res["emotion_pairs"]["neutral-angry"] == {"mean": 0.0, "std": 0.0, "n": 1}
    assert res["genuine"]["mean"] == pytest.approx(1.0) and res["genuine"]["n"] == 1
    assert res["impostor"]["mean"] == pytest.approx(1 / math.sqrt(2)) and res["impostor"]["n"] == 2
    # inter-emotion 0.0 lies beyond the impostor level: (1 - 0) / (1 - 0.7071) = 3.41
    assert res["shift_toward_impostor"] == pytest.approx(1 / (1 - 1 / math.sqrt(2)))


def test_needs_the_text_key() -> None:
    utts = [Utterance(id="a", path="x", speaker="A", label="neutral")]
    with pytest.raises(ValueError, match="text"):
        emotion_shift(utts, np.ones((1, 2)), ["neutral", "angry"])


@pytest.mark.e2e
def test_emotion_shift_task_end_to_end(tmp_path: Path) -> None:
    from e2e_utils import read_json, run_script, speech_emodb_tree

    corpus = speech_emodb_tree(tmp_path / "emodb")
    run = tmp_path / "run"
    run_script("evaluate.py", "task=emotion_shift", "encoder=egemaps", f"data.root={corpus}", "logger=none",
               f"hydra.run.dir={run}", tmp=tmp_path)
    res = read_json(run / "results.json")
    # 4 speakers x 3 texts: every pair of the 5 fixture emotions is seen once per speaker and text
    assert res["emotion_pairs"]["neutral-angry"]["n"] == 4 * 3
    assert res["genuine"]["n"] == 4 * 3  # 3 neutral texts per speaker -> 3 pairs each
    assert res["impostor"]["n"] == 6 * 3 * 3
    assert (run / "emotion_shift.png").stat().st_size > 1000
