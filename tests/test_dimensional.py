"""Continuous emotion: CCC on known series, the fold runner on constructed data, the job on a fixture."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.svm import SVR

from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.evaluation.protocols import LeaveOneGroupOutProtocol
from deeptalk_ser.evaluation.regression import ccc, dimension_targets, run_dimensional_folds


def test_ccc_known_values():
    t = np.array([1.0, 2.0, 3.0, 4.0])
    assert ccc(t, t) == pytest.approx(1.0)
    assert ccc(t, -t + 5) == pytest.approx(-1.0)
    # a constant offset keeps Pearson r = 1 but costs concordance: 2*1.25 / (1.25 + 1.25 + 1)
    assert ccc(t, t + 1) == pytest.approx(2.5 / 3.5)
    # scale error: p = 2t: cov 2.5, var_t 1.25, var_p 5, (2.5 - 5)^2 = 6.25
    assert ccc(t, 2 * t) == pytest.approx(5.0 / (1.25 + 5.0 + 6.25))
    assert np.isnan(ccc(np.ones(3), np.ones(3)))


def test_dimension_targets_keeps_complete_numeric_rows():
    utts = [Utterance(id="a", path="-", speaker="s", extra={"valence": 1.0, "activation": 2.0}),
            Utterance(id="b", path="-", speaker="s", extra={"valence": None, "activation": 2.0}),
            Utterance(id="c", path="-", speaker="s", extra={"valence": 3.0})]
    rows, Y = dimension_targets(utts, ["activation", "valence"])
    assert rows == [0] and Y.tolist() == [[2.0, 1.0]]


def test_folds_learn_a_linear_target_and_keep_the_test_fold_out():
    rng = np.random.default_rng(0)
    n_spk, per = 6, 30
    X = rng.standard_normal((n_spk * per, 8))
    Y = np.stack([X[:, 0] * 2 + 3, -X[:, 1]], axis=1)
    utts = [Utterance(id=f"{i}", path="-", speaker=f"s{i // per}") for i in range(len(X))]
    folds = LeaveOneGroupOutProtocol().folds(utts, np.array(["-"] * len(utts), dtype=object))
    res = run_dimensional_folds(X, Y, ["activation", "valence"], folds, {"ridge": Ridge(alpha=1e-3), "svr": SVR()},
                                np.array([u.speaker for u in utts], dtype=object), True)
    assert res["n_tested"] == len(X) and len(res["folds"]) == n_spk
    assert res["pooled"]["ridge/activation"]["ccc"] > 0.99 and res["pooled"]["ridge/valence"]["ccc"] > 0.99
    assert res["pooled"]["svr/activation"]["ccc"] > 0.8
    # every test row was predicted by a model that never saw it: a model fitted on the test fold
    # (leakage) would predict its own rows far better than the noise below allows
    Y_noisy = Y + rng.standard_normal(Y.shape) * 5
    leak = run_dimensional_folds(X, Y_noisy, ["activation", "valence"], folds, {"ridge": Ridge(alpha=1e-3)},
                                 np.array([u.speaker for u in utts], dtype=object), True)
    assert leak["pooled"]["ridge/activation"]["ccc"] < 0.6


@pytest.mark.e2e
def test_job_on_an_iemocap_fixture(tmp_path):
    import soundfile as sf
    from conftest import speech_like
    from corpora.emotion_fixtures import build_iemocap
    from e2e_utils import read_json, run_script

    root = build_iemocap(tmp_path / "IEMOCAP_full_release")
    for k, wav in enumerate(sorted(root.rglob("*.wav"))):  # the layout fixture's 20 ms tones -> 1 s of speech
        sf.write(str(wav), speech_like(1.0, 16000, f0=100.0 + 10 * k), 16000)
    run = tmp_path / "run"
    proc = run_script("evaluate.py", "task=dimensional", "data=iemocap", f"data.root={root}", "encoder=egemaps", "logger=none", f"hydra.run.dir={run}", tmp=tmp_path)
    res = read_json(run / "results.json")
    assert res["task"] == "dimensional" and res["n_folds"] == 5 and res["protocol"] == "leave_one_session_out"
    assert set(res["pooled"]) == {f"{m}/{d}" for m in ("svr", "ridge") for d in ("activation", "valence", "dominance")}
    assert (run / "dimensional.png").is_file() and "pooled CCC" in proc.stdout
