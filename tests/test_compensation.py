"""Emotion compensation (evaluation/compensation.py): on constructed embeddings with a known
emotion direction it removes that direction and lowers the emotional EER; fit and test speakers
never overlap; the job writes both per-emotion tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.evaluation.compensation import NAP, SpeakerLDA, check_disjoint, split_speakers
from deeptalk_ser.evaluation.emotion_verification import emotion_verification
from deeptalk_ser.utils.errors import ConfigError

DIM = 32


def _corpus(prefix: str, n_speakers: int, direction: np.ndarray, seed: int) -> tuple[list[Utterance], np.ndarray]:
    """Random speaker vectors; neutral utterances near them, angry ones shifted by 3x along ``direction``."""
    rng = np.random.default_rng(seed)
    utts, rows = [], []
    for s in range(n_speakers):
        spk = rng.normal(size=DIM)
        spk /= np.linalg.norm(spk)
        for label, shift in (("neutral", 0.0), ("angry", 3.0)):
            for i in range(4):
                utts.append(Utterance(id=f"{prefix}{s}_{label}{i}", path="-", speaker=f"{prefix}{s}", label=label))
                rows.append(spk + shift * direction + 0.15 * rng.normal(size=DIM) / np.sqrt(DIM))
    return utts, np.array(rows)


@pytest.fixture(scope="module")
def setup() -> tuple[np.ndarray, tuple[list[Utterance], np.ndarray], tuple[list[Utterance], np.ndarray]]:
    direction = np.zeros(DIM)
    direction[0] = 1.0
    return direction, _corpus("fit", 12, direction, 0), _corpus("test", 10, direction, 1)


def test_nap_finds_and_removes_the_emotion_direction(setup) -> None:
    direction, (fu, fX), (tu, tX) = setup
    nap = NAP(k=1).fit(fX, [u.speaker for u in fu], [u.label for u in fu])
    assert abs(nap.components_[0] @ direction) > 0.95  # the direction found is the constructed one
    assert np.abs(nap.transform(tX) @ nap.components_.T).max() < 1e-9  # projected out exactly
    angry = np.array([u.label == "angry" for u in tu])
    unit = tX[angry] / np.linalg.norm(tX[angry], axis=1, keepdims=True)
    assert np.abs(unit @ direction).mean() > 0.9 and np.abs(nap.transform(tX[angry]) @ direction).mean() < 0.15
    before = emotion_verification(tu, tX)["emotions"]["angry"]["eer"]
    after = emotion_verification(tu, nap.transform(tX))["emotions"]["angry"]["eer"]
    assert before > 0.1 and after < before / 2


def test_lda_on_emotional_speech_lowers_the_eer(setup) -> None:
    _, (fu, fX), (tu, tX) = setup
    lda = SpeakerLDA().fit(fX, [u.speaker for u in fu], [u.label for u in fu])
    assert lda.transform(tX).shape == (len(tX), 11)  # fit speakers - 1
    before = emotion_verification(tu, tX)["emotions"]["angry"]["eer"]
    after = emotion_verification(tu, lda.transform(tX))["emotions"]["angry"]["eer"]
    assert after < before


def test_fit_and_test_speakers_never_overlap() -> None:
    fit, test = split_speakers([f"s{i}" for i in range(10)] * 3, 0.5, seed=3)
    assert not set(fit) & set(test) and len(fit) + len(test) == 10
    assert split_speakers([f"s{i}" for i in range(10)], 0.5, seed=3) == (fit, test)  # seeded
    with pytest.raises(ConfigError, match="compensation.data: fit and test speakers overlap"):
        check_disjoint(["a", "b"], ["b", "c"])


def test_bad_settings_name_the_key(setup) -> None:
    _, (fu, fX), _ = setup
    with pytest.raises(ConfigError, match="compensation.k"):
        NAP(k=0).fit(fX, [u.speaker for u in fu], [u.label for u in fu])
    with pytest.raises(ConfigError, match="compensation.fit_fraction"):
        split_speakers(["a", "b", "c", "d"], 1.5, seed=0)


def test_job_writes_both_tables_and_tests_unseen_speakers(tmp_path: Path) -> None:
    from e2e_utils import read_json, run_script, speech_emodb_tree

    corpus = speech_emodb_tree(tmp_path / "emodb", speakers=("03", "08", "09", "10", "11", "12"), texts=("a01", "a02"))
    run = tmp_path / "run"
    proc = run_script("evaluate.py", "task=emotion_verification", "encoder=egemaps", f"data.root={corpus}",
                      "compensation=nap", "compensation.k=1", "logger=none", f"hydra.run.dir={run}", tmp=tmp_path)
    res = read_json(run / "results.json")
    assert set(res["emotions_uncompensated"]) == set(res["emotions"])
    assert res["compensation"]["n_fit_speakers"] == 3 and res["compensation"]["n_test_speakers"] == 3
    assert res["n_speakers"] == 3  # only the speakers the projection never saw are scored
    for rec in res["emotions_uncompensated"].values():
        assert "ci95" in rec and "min_dcf" in rec
    assert "EER uncompensated" in proc.stdout and (run / "emotion_verification.png").stat().st_size > 0


@pytest.mark.slow  # covered in the default run by compensation end to end: test_job_writes_both_tables_and_tests_unseen_speakers
def test_verification_job_accepts_compensation(tmp_path: Path) -> None:
    from e2e_utils import read_json, run_script, speech_kaldi_tree

    corpus = speech_kaldi_tree(tmp_path / "speechocean762", n_speakers=6, n_utts=3, sr=16000)
    run = tmp_path / "run"
    run_script("evaluate.py", "task=verification", "data=speechocean762", "encoder=egemaps", f"data.root={corpus}",
               "compensation=lda", "logger=none", "intervals.n_resamples=50", f"hydra.run.dir={run}", tmp=tmp_path)
    res = read_json(run / "results.json")
    assert res["compensation"]["method"] == "lda" and 0.0 <= res["eer_uncompensated"] <= 1.0
    assert res["compensation"]["n_test_speakers"] + res["compensation"]["n_fit_speakers"] == res["n_speakers"]
    assert "eer" in res["ci95_uncompensated"]
