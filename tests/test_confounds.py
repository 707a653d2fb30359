"""Confounds and degenerate results are said in results.json["warnings"] (issue 21, item 4)."""

from __future__ import annotations

import numpy as np
import pytest

from deeptalk_ser.evaluation.confounds import (assess_run, confound_warnings, degenerate_warnings,
                                               speaker_label_structure)


def test_structure_of_a_confounded_and_a_balanced_corpus():
    spk = np.repeat(["a", "b", "c", "d"], 4)
    confounded = speaker_label_structure(spk, np.repeat(["angry", "sad", "happy", "neutral"], 4))
    assert confounded["single_label_share"] == 1.0 and confounded["nmi"] == pytest.approx(1.0)
    balanced = speaker_label_structure(spk, np.tile(["angry", "sad", "happy", "neutral"], 4))
    assert balanced["single_label_share"] == 0.0 and balanced["nmi"] == pytest.approx(0.0, abs=1e-9)
    mixed = speaker_label_structure(spk, np.array(["x"] * 8 + ["x", "y"] * 4))
    assert mixed["n_single_label_speakers"] == 2 and mixed["single_label_share"] == 0.5


def test_confound_warning_only_with_per_speaker_normalisation_on_mostly_single_label_speakers():
    spk = np.repeat(["a", "b", "c", "d"], 4)
    confounded = speaker_label_structure(spk, np.repeat(["angry", "sad", "happy", "neutral"], 4))
    (w,) = confound_warnings(confounded, "mean")
    assert "confound" in w and "4 of 4 speakers" in w and "features.per_speaker=mean" in w
    assert confound_warnings(confounded, "none") == []
    half = speaker_label_structure(spk, np.array(["x"] * 8 + ["x", "y"] * 4))
    assert confound_warnings(half, "zscore") == []  # half is not "most"


def test_a_fold_predicting_one_class_is_flagged_only_when_its_truth_has_several():
    y_true = np.array(["a", "b", "a", "b", "a", "a"], dtype=object)
    y_pred = np.array(["a", "a", "a", "b", "a", "a"], dtype=object)
    flags = degenerate_warnings(y_true, y_pred, ["f1", "f2", "f3"], [2, 2, 2], [0.7, 0.9], 2)
    assert flags == ["degenerate fold (1 of 3) predicting one class for test utterances of several: f1 (all 2 'a')"]
    # f3 is all 'a' truly: not flagged


def test_a_run_predicting_one_class_and_an_interval_containing_chance_are_flagged():
    y_true = np.array(["a", "b", "c", "d"] * 2, dtype=object)
    y_pred = np.array(["c"] * 8, dtype=object)
    flags = degenerate_warnings(y_true, y_pred, ["f1", "f2"], [4, 4], [0.2, 0.3], 4)
    assert "degenerate folds (2 of 2) predicting one class for test utterances of several: f1 (all 4 'c'), f2 (all 4 'c')" in flags
    assert "degenerate run: every prediction is 'c'" in flags
    assert any("contains chance (0.250, 1/4 classes)" in f for f in flags)
    assert degenerate_warnings(y_true, y_true, ["f1", "f2"], [4, 4], [0.26, 0.9], 4) == []
    assert degenerate_warnings(y_true, y_true, ["f1", "f2"], [4, 4], None, 4) == []  # intervals off


def test_assess_run_records_structure_and_joins_the_warnings():
    spk = np.repeat(["a", "b"], 4)
    labels = np.repeat(["x", "y"], 4)
    folds = [{"name": "a", "n_test": 4}, {"name": "b", "n_test": 4}]
    structure, flags = assess_run(spk, labels, "mean", labels, labels[::-1], folds, {"ua": [0.3, 0.6]}, ["x", "y"])
    assert structure["single_label_share"] == 1.0
    assert any("confound" in f for f in flags) and any("contains chance" in f for f in flags)


@pytest.mark.e2e
def test_evaluate_on_one_emotion_per_speaker_with_per_speaker_mean_says_confound(tmp_path):
    from e2e_utils import read_json, run_script, speech_emodb_tree

    corpus = tmp_path / "emodb"
    for spk, letter in zip(("03", "08", "09", "10"), ("W", "T", "F", "N")):  # each speaker one emotion
        speech_emodb_tree(corpus, speakers=(spk,), texts=("a01", "a02"), letters=(letter,))
    run = tmp_path / "run"
    proc = run_script("evaluate.py", "experiment=egemaps_baseline", f"data.root={corpus}", "logger=none",
                      "features.per_speaker=mean", f"hydra.run.dir={run}", tmp=tmp_path)
    res = read_json(run / "results.json")
    assert res["speaker_labels"]["single_label_share"] == 1.0 and res["speaker_labels"]["nmi"] == pytest.approx(1.0)
    confound = [w for w in res["warnings"] if "confound" in w]
    assert len(confound) == 1
    lines = proc.stdout.strip().splitlines()
    assert "confound" in lines[-1]  # the final line
    assert any(line.startswith("WARNING: ") and "confound" in line for line in lines[:-1])  # under the table


@pytest.mark.e2e
def test_the_papers_svm_on_raw_egemaps_says_it_collapsed_and_what_to_do(tmp_path):
    """encoder=egemaps with the paper's unscaled SVM predicts one class: the run says so and names the fix."""
    from e2e_utils import read_json, run_script, speech_emodb_tree

    corpus = speech_emodb_tree(tmp_path / "emodb")
    run = tmp_path / "run"
    run_script("evaluate.py", "encoder=egemaps", f"data.root={corpus}", "logger=none", "intervals.n_resamples=200",
               f"hydra.run.dir={run}", tmp=tmp_path)
    res = read_json(run / "results.json")
    assert res["ua"] == pytest.approx(0.25)
    assert any(w.startswith("degenerate run") for w in res["warnings"])
    assert any("classifier.standardize=true" in w and "experiment=egemaps_baseline" in w for w in res["warnings"])
