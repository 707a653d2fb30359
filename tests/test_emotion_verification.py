"""Emotion vs speaker verification: trials and scores on constructed embeddings, and the job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.evaluation.emotion_verification import emotion_verification
from deeptalk_ser.evaluation.verification import compute_eer
from deeptalk_ser.utils.errors import ConfigError

E = np.eye(3)


def _case():
    """Speakers a, b, c on the three axes; two neutral utterances each (exactly on their axis);
    one angry utterance each: a's angry voice sits on b's axis, the others stay on their own."""
    utts, rows = [], []
    for k, spk in enumerate("abc"):
        for i in range(2):
            utts.append(Utterance(id=f"{spk}_n{i}", path="-", speaker=spk, label="neutral"))
            rows.append(E[k])
        utts.append(Utterance(id=f"{spk}_angry", path="-", speaker=spk, label="angry"))
        rows.append(E[1] if spk == "a" else E[k])
    return utts, np.array(rows)


def test_known_trials_and_eer():
    utts, emb = _case()
    res = emotion_verification(utts, emb, "neutral")
    assert list(res["emotions"]) == ["neutral", "angry"]
    neutral, angry = res["emotions"]["neutral"], res["emotions"]["angry"]
    # neutral: 6 utterances, each a target trial against its leave-one-out model (score 1) and a
    # non-target against the 2 other models (score 0)
    assert (neutral["n_target"], neutral["n_nontarget"]) == (6, 12) and neutral["eer"] == 0.0
    # angry: targets a=0 (moved to b), b=1, c=1; non-targets: a vs b = 1, the other five 0
    assert (angry["n_target"], angry["n_nontarget"]) == (3, 6)
    want, _ = compute_eer(np.array([0, 1, 1, 1, 0, 0, 0, 0, 0.0]), np.array([1, 1, 1, 0, 0, 0, 0, 0, 0]))
    assert angry["eer"] == pytest.approx(want) and angry["eer"] > 0
    assert angry["eer_minus_reference"] == pytest.approx(want)
    assert angry["target_score_mean"] == pytest.approx(2 / 3) and angry["nontarget_score_mean"] == pytest.approx(1 / 6)
    assert res["enrolled_speakers"] == 3 and res["mean_emotional_eer"] == pytest.approx(want)


def test_test_utterance_never_in_its_own_model():
    """With a single neutral utterance a speaker has no neutral target trial (its model would be the
    utterance itself, a score of 1 that says nothing)."""
    utts, emb = _case()
    keep = [i for i, u in enumerate(utts) if u.id != "c_n1"]
    res = emotion_verification([utts[i] for i in keep], emb[keep], "neutral")
    assert res["emotions"]["neutral"]["n_target"] == 4


def test_speakers_without_enrolment_are_left_out_and_listed():
    utts, emb = _case()
    utts.append(Utterance(id="d_angry", path="-", speaker="d", label="angry"))
    emb = np.vstack([emb, [1.0, 1.0, 0.0]])
    res = emotion_verification(utts, emb, "neutral")
    assert res["speakers_without_enrolment"] == ["d"] and res["emotions"]["angry"]["n_target"] == 3


def test_bad_settings_name_the_key():
    utts, emb = _case()
    with pytest.raises(ConfigError, match="task.enrol_label"):
        emotion_verification(utts, emb, "calm")
    with pytest.raises(ConfigError, match="task.emotions"):
        emotion_verification(utts, emb, "neutral", emotions=["neutral", "bored"])


@pytest.mark.e2e
def test_job_on_a_generated_emodb_tree(tmp_path: Path) -> None:
    from e2e_utils import read_json, run_script, speech_emodb_tree

    corpus = speech_emodb_tree(tmp_path / "emodb", speakers=("03", "08", "09"), texts=("a01", "a02"))
    run = tmp_path / "run"
    proc = run_script("evaluate.py", "task=emotion_verification", "encoder=egemaps", f"data.root={corpus}",
                      "logger=none", f"hydra.run.dir={run}", tmp=tmp_path)
    res = read_json(run / "results.json")
    assert res["task"] == "emotion_verification" and list(res["emotions"])[0] == "neutral"
    assert set(res["emotions"]) == {"neutral", "angry", "boredom", "happy", "sad"}
    for rec in res["emotions"].values():
        assert 0.0 <= rec["eer"] <= 1.0 and rec["n_nontarget"] == 2 * rec["n_utterances"]  # vs the 2 other models
    assert (run / "emotion_verification.png").stat().st_size > 0
    assert "EER - reference" in proc.stdout
    # speaker-level bootstrap interval per emotion (evaluation/intervals.py), in the table too
    for rec in res["emotions"].values():
        lo, hi = rec["ci95"]["eer"]
        assert lo <= rec["eer"] <= hi
    assert "EER 95% CI" in proc.stdout


@pytest.mark.parametrize("corpus", ["crema_d", "iemocap", "ravdess"])
def test_runs_on_the_other_corpora_labels(tmp_path: Path, corpus: str) -> None:
    """The corpora absent here: their fixture manifests (labels, speakers) go through the analysis."""
    from corpora import emotion_fixtures as fx
    from corpora.speaker_fixtures import instantiate_data_config

    root_name = {"crema_d": "CREMA-D", "iemocap": "IEMOCAP_full_release", "ravdess": "RAVDESS"}[corpus]
    getattr(fx, f"build_{corpus}")(tmp_path / root_name)
    utts = [u for u in instantiate_data_config(corpus, tmp_path).scan() if u.label is not None]
    emb = np.random.default_rng(0).standard_normal((len(utts), 8))
    speakers_with_neutral = {u.speaker for u in utts if u.label == "neutral"}
    if len(speakers_with_neutral) < 2:
        with pytest.raises(ConfigError, match="task.enrol_label"):
            emotion_verification(utts, emb, "neutral")
        return
    res = emotion_verification(utts, emb, "neutral")
    assert res["enrolled_speakers"] == len(speakers_with_neutral)
    assert (res["reference_eer"] is None) == ("neutral" not in res["emotions"])
    for rec in res["emotions"].values():
        assert 0.0 <= rec["eer"] <= 1.0 and rec["n_target"] >= 1 and rec["n_nontarget"] >= 1
