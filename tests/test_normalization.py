"""Per-speaker normalisation: each speaker's rows centred / standardised on their own statistics."""

from __future__ import annotations

import numpy as np
import pytest

from deeptalk_ser.evaluation.normalization import normalise_per_speaker
from deeptalk_ser.utils.errors import ConfigError


def test_modes_on_two_speakers():
    X = np.array([[1.0, 10.0], [3.0, 14.0], [100.0, 0.0], [104.0, 2.0], [102.0, 4.0]])
    spk = np.array(["a", "a", "b", "b", "b"], dtype=object)
    assert normalise_per_speaker(X, spk, "none") is X
    m = normalise_per_speaker(X, spk, "mean")
    np.testing.assert_allclose(m, [[-1, -2], [1, 2], [-2, -2], [2, 0], [0, 2]])
    z = normalise_per_speaker(X, spk, "zscore")
    for s in ("a", "b"):
        np.testing.assert_allclose(z[spk == s].mean(axis=0), 0, atol=1e-6)
        np.testing.assert_allclose(z[spk == s].std(axis=0), 1, atol=1e-5)
    with pytest.raises(ConfigError, match="features.per_speaker"):
        normalise_per_speaker(X, spk, "global")


def test_removes_a_speaker_offset_that_hides_the_emotion_axis():
    """Emotion moves dim 0 by +-1 within every speaker; speakers sit at offsets up to 50 apart.
    A nearest-centroid rule on the emotion axis then only works after normalisation."""
    rng = np.random.default_rng(0)
    spk = np.repeat(np.arange(6), 20).astype(str).astype(object)
    emo = np.tile([0, 1], 60)
    X = np.stack([(emo * 2 - 1) + rng.normal(0, 0.2, 120) + rng.uniform(-50, 50, 6)[spk.astype(int)],
                  rng.normal(0, 1, 120)], axis=1)
    acc = lambda A: float(np.mean((A[:, 0] > 0) == (emo == 1)))  # noqa: E731
    assert acc(X) < 0.8 and acc(normalise_per_speaker(X, spk, "mean")) > 0.95


@pytest.mark.slow  # covered in the default run by features.per_speaker end to end: tests/test_confounds.py
@pytest.mark.e2e
def test_per_speaker_mean_through_evaluate_py(tmp_path):
    """``features.per_speaker`` reaches the job: recorded, and the fixture's speaker offsets removed
    (its emotions differ the same way for every speaker) keep the score well above chance."""
    from e2e_utils import read_json, run_script, speech_emodb_tree

    corpus = speech_emodb_tree(tmp_path / "emodb", speakers=("03", "08", "09"), texts=("a01", "a02"))
    for mode in ("none", "mean"):
        run = tmp_path / mode
        run_script("evaluate.py", "experiment=egemaps_baseline", f"features.per_speaker={mode}", f"data.root={corpus}",
                   "logger=none", f"hydra.run.dir={run}", tmp=tmp_path)
        res = read_json(run / "results.json")
        assert res["per_speaker_normalisation"] == mode and res["ua"] >= 0.7, (mode, res["ua"])
    proc = run_script("evaluate.py", "features.per_speaker=global", f"data.root={corpus}", "logger=none",
                      f"hydra.run.dir={tmp_path / 'bad'}", tmp=tmp_path, check=False, env={"HYDRA_FULL_ERROR": "0"})
    assert proc.returncode == 1 and "features.per_speaker" in proc.stderr.strip().splitlines()[0]
