"""Saved heads (no pickle) and predict.py: a saved head predicts exactly what it predicted in the run."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from deeptalk_ser.evaluation.classifiers.hierarchical import sad_first
from deeptalk_ser.evaluation.classifiers.svm import SVMClassifier
from deeptalk_ser.evaluation.heads import class_scores, load_head, save_head
from deeptalk_ser.utils.errors import DataError


def _data(n=80, dim=6):
    rng = np.random.default_rng(0)
    y = np.array(["angry", "sad", "happy", "neutral"] * (n // 4), dtype=object)
    centres = {c: rng.standard_normal(dim) for c in set(y)}
    X = np.stack([centres[c] + 0.5 * rng.standard_normal(dim) for c in y]).astype(np.float32)
    return X, y


@pytest.mark.parametrize("make", [lambda: SVMClassifier(backend="sklearn"),
                                  lambda: SVMClassifier(standardize=True, gamma="scale", backend="sklearn"),
                                  lambda: sad_first(backend="sklearn")])
def test_saved_head_predicts_bit_for_bit(tmp_path, make):
    X, y = _data()
    clf = make().fit(X, y)
    save_head(clf, tmp_path / "model", {"task": "er"})
    loaded, info = load_head(tmp_path / "model")
    assert info["task"] == "er" and type(loaded) is type(clf)
    assert (loaded.predict(X) == clf.predict(X)).all()
    names, scores = class_scores(loaded, X)
    names0, scores0 = class_scores(clf, X)
    assert names == names0 and np.array_equal(scores, scores0) and scores.shape == (len(X), 4)
    assert not list((tmp_path / "model").glob("*.pkl"))


def test_a_foreign_object_in_a_head_file_is_refused(tmp_path):
    import skops.io as sio

    X, y = _data()
    save_head(SVMClassifier(backend="sklearn").fit(X, y), tmp_path / "model", {"task": "er"})
    sio.dump({"model": np.zeros(2), "extra": Path("x")}, tmp_path / "model" / "flat.skops")  # a non-library type
    with pytest.raises(DataError, match="refused: holds pathlib.PosixPath"):
        load_head(tmp_path / "model")
    with pytest.raises(DataError, match="not a saved head"):
        load_head(tmp_path)


@pytest.mark.e2e
def test_evaluate_save_model_then_predict(tmp_path):
    from e2e_utils import read_json, run_script, speech_emodb_tree

    corpus = speech_emodb_tree(tmp_path / "emodb", speakers=("03", "08", "09"), texts=("a01", "a02"))
    run = tmp_path / "run"
    run_script("evaluate.py", "experiment=egemaps_baseline", f"data.root={corpus}", "logger=none", "save_model=true",
               f"hydra.run.dir={run}", tmp=tmp_path)
    assert read_json(run / "results.json")["model"] == str(run / "model")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage")
    inputs = [str(corpus / "wav" / "03a01Wa.wav"), str(corpus / "wav"), str(bad)]
    out = tmp_path / "pred"
    proc = run_script("predict.py", f"model={run / 'model'}", f"inputs=[{','.join(inputs)}]", f"hydra.run.dir={out}",
                      tmp=tmp_path)
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 1 + 3 * 2 * 5 + 1
    assert rows[-1]["file"] == str(bad) and rows[-1]["problem"] and not rows[-1]["label"]
    predicted = [r for r in rows if r["label"]]
    assert len(predicted) == 3 * 2 * 5 + 1 and {r["label"] for r in predicted} <= {"angry", "sad", "happy", "neutral"}
    assert {"score_angry", "score_sad", "score_happy", "score_neutral"} <= set(rows[0])
    assert "1 skipped" in proc.stdout.strip().splitlines()[-1]
