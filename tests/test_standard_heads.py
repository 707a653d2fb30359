"""The standard heads (logreg, linear_svm, mlp, knn): scikit-learn estimators that work flat, as
Sad-First stages, tuned with their own default grid, on fused blocks, and saved for predict.py."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from deeptalk_ser.evaluation.classifiers import (KNNClassifier, LinearSVMClassifier, LogRegClassifier, MLPHead,
                                                 SadFirstClassifier, SVMClassifier)
from deeptalk_ser.evaluation.classifiers.fusion import BlockScaler, with_blocks
from deeptalk_ser.evaluation.heads import ALLOWED_NODES, _node_types, class_scores, load_head, save_head
from deeptalk_ser.evaluation.tuning import resolve_grid, tuned_fit
from deeptalk_ser.utils.errors import ConfigError, DataError

HEADS = [LogRegClassifier, LinearSVMClassifier, MLPHead, KNNClassifier]
FOUR = ["angry", "sad", "happy", "neutral"]


def _data(n: int = 160, dim: int = 8, seed: int = 0):
    """Four separable classes, 8 speakers (every speaker has every class)."""
    rng = np.random.default_rng(seed)
    y = np.array(FOUR * (n // 4), dtype=object)
    centres = {c: 3.0 * np.eye(dim)[i] for i, c in enumerate(FOUR)}
    X = np.stack([centres[c] + 0.4 * rng.standard_normal(dim) for c in y]).astype(np.float32)
    return X, y, np.repeat(np.arange(8), n // 8)


@pytest.mark.parametrize("cls", HEADS)
def test_each_head_learns_separable_classes_and_is_a_clean_estimator(cls):
    X, y, _ = _data()
    Xte, yte, _ = _data(seed=1)
    clf = cls().fit(X, y)
    assert (clf.predict(Xte) == yte).mean() > 0.95
    assert list(clf.classes_) == sorted(FOUR) and clf.resolved_backend == "sklearn"
    copy = clone(clf)
    assert copy.get_params() == clf.get_params() and not hasattr(copy, "model_")
    assert clf.describe()["name"] == cls().name


@pytest.mark.parametrize("cls, bad, key", [(LogRegClassifier, {"C": -1.0}, "classifier.C"),
                                           (LinearSVMClassifier, {"max_iter": -1}, "classifier.max_iter"),
                                           (MLPHead, {"hidden_size": 0}, "classifier.hidden_size"),
                                           (MLPHead, {"alpha": -1.0}, "classifier.alpha"),
                                           (KNNClassifier, {"weights": "nearest"}, "classifier.weights")])
def test_bad_values_are_refused_before_any_fit_naming_the_key(cls, bad, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        cls(**bad).check_params()


def test_standardize_puts_a_training_fold_scaler_before_the_model():
    X, y, _ = _data()
    assert LogRegClassifier(standardize=True).fit(X, y).model_.steps[0][0] == "scale"
    assert not hasattr(LogRegClassifier(standardize=False).fit(X, y).model_, "steps")


def test_knn_is_cosine_and_caps_k_at_the_training_rows():
    X, y, _ = _data(n=8)
    clf = KNNClassifier(n_neighbors=40).fit(X * np.arange(1, 9, dtype=np.float32)[:, None], y)  # scale: cosine ignores it
    assert clf.model_.n_neighbors == 8 and clf.model_.metric == "cosine"
    assert (clf.predict(X) == y).all()


def test_mlp_is_one_hidden_layer_early_stopped_and_seeded():
    X, y, _ = _data()
    a, b = MLPHead(hidden_size=32).fit(X, y), MLPHead(hidden_size=32).fit(X, y)
    inner = a.model_[-1]
    assert inner.hidden_layer_sizes == (32,) and inner.early_stopping and len(inner.coefs_) == 2
    assert all(np.array_equal(p, q) for p, q in zip(inner.coefs_, b.model_[-1].coefs_))
    assert not hasattr(inner, "_optimizer")  # training-only state is not kept (nor saved)


@pytest.mark.parametrize("cls", HEADS)
def test_each_head_is_a_sad_first_stage(cls):
    X, y, _ = _data()
    clf = SadFirstClassifier(first_stage=cls(), second_stage=KNNClassifier()).fit(X, y)
    assert set(clf.predict(X)) <= set(FOUR) and (clf.predict(X) == y).mean() > 0.95
    assert isinstance(clf.stage1_, cls) and isinstance(clf.stage2_, KNNClassifier)


@pytest.mark.parametrize("make", [lambda: LogRegClassifier(), lambda: LinearSVMClassifier(), lambda: MLPHead(max_iter=50),
                                  lambda: KNNClassifier(), lambda: SadFirstClassifier(first_stage=LogRegClassifier())])
def test_tuning_searches_each_heads_default_grid(make):
    X, y, spk = _data()
    grid = resolve_grid(None, make())
    assert grid and grid == make().default_grid
    best, info = tuned_fit(make, grid, X, y, spk, inner_folds=2)
    n_points = int(np.prod([len(v) for v in grid.values()]))
    assert len(info["grid_scores"]) == n_points and (best.predict(X) == y).mean() > 0.9


def test_a_given_grid_wins_and_a_head_without_one_is_refused():
    assert resolve_grid({"C": [2.0]}, LogRegClassifier()) == {"C": [2.0]}
    assert set(resolve_grid(None, SVMClassifier())) == {"C", "gamma"}
    with pytest.raises(ConfigError, match="tuning.grid"):
        resolve_grid(None, object())


@pytest.mark.parametrize("cls", HEADS)
def test_fused_blocks_are_scaled_inside_each_head(cls):
    X, y, _ = _data()
    clf = with_blocks(cls, [5, 3])().fit(X, y)
    assert clf.blocks == [5, 3] and isinstance(clf.model_.steps[0][1], BlockScaler)
    assert clf.describe()["blocks"] == [5, 3]


@pytest.mark.parametrize("make", [LogRegClassifier, LinearSVMClassifier, MLPHead, KNNClassifier,
                                  lambda: SadFirstClassifier(first_stage=MLPHead(), second_stage=LogRegClassifier()),
                                  lambda: SadFirstClassifier(first_stage=KNNClassifier())])
def test_saved_standard_heads_round_trip_through_the_allow_list(tmp_path, make):
    X, y, _ = _data()
    clf = make().fit(X, y)
    model = save_head(clf, tmp_path / "model", {"task": "er"})
    for f in model.glob("*.skops"):
        assert _node_types(f) <= ALLOWED_NODES
    loaded, info = load_head(model)
    assert type(loaded) is type(clf) and loaded.get_params(deep=False).keys() == clf.get_params(deep=False).keys()
    if isinstance(clf, SadFirstClassifier):
        assert type(loaded.stage1_) is type(clf.stage1_) and type(loaded.stage2_) is type(clf.stage2_)
    assert (loaded.predict(X) == clf.predict(X)).all()
    (names, scores), (names0, scores0) = class_scores(loaded, X), class_scores(clf, X)
    assert names == names0 and np.array_equal(scores, scores0) and scores.shape == (len(X), 4)


def test_a_stage_kind_that_is_no_head_is_refused(tmp_path):
    import json

    X, y, _ = _data()
    model = save_head(SadFirstClassifier(first_stage=LogRegClassifier()).fit(X, y), tmp_path / "model", {"task": "er"})
    info = json.loads((model / "head.json").read_text())
    info["params"]["stage_kinds"]["first_stage"] = "builtins.exec"
    (model / "head.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match="stage_kinds"):
        load_head(model)


def test_the_allow_list_adds_only_the_standard_heads_classes():
    """Exactly the new estimator classes (and the MLP's label binarizer), no module wildcard, no
    builtins object or reduce nodes."""
    objects = {(m, c) for loader, m, c in ALLOWED_NODES if loader == "ObjectNode"}
    assert {("sklearn.linear_model._logistic", "LogisticRegression"), ("sklearn.svm._classes", "LinearSVC"),
            ("sklearn.neural_network._multilayer_perceptron", "MLPClassifier"),
            ("sklearn.preprocessing._label", "LabelBinarizer"),
            ("sklearn.neighbors._classification", "KNeighborsClassifier")} <= objects
    assert len(objects) == 9 and not any(m.startswith("builtins") or c == "*" for m, c in objects)
    assert {loader for loader, _, _ in ALLOWED_NODES} == {"ObjectNode", "DictNode", "ListNode", "TupleNode",
                                                          "TypeNode", "JsonNode", "NdArrayNode"}


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_a_standard_head_file_that_calls_exec_is_refused(tmp_path, kind):
    from test_head_security import _exec_schema, _replace_schema

    X, y, _ = _data()
    model = save_head((LogRegClassifier if kind == "logreg" else MLPHead)().fit(X, y), tmp_path / "model", {"task": "er"})
    marker = tmp_path / "pwned"
    _replace_schema(model / "flat.skops", _exec_schema(f"open({str(marker)!r}, 'w').write('x')"))
    with pytest.raises(DataError, match=r"refused: holds builtins\.exec"):
        load_head(model)
    assert not marker.exists()


def test_mlp_on_a_fold_too_small_to_hold_out_every_class_trains_without_early_stopping():
    X, y, _ = _data(n=12)
    X, y = X[:9], y[:9]  # 'neutral' twice, the rest three times: a 1-row hold-out cannot hold 4 classes
    clf = MLPHead(hidden_size=8).fit(X, y)
    assert not clf.model_[-1].early_stopping and set(clf.predict(X)) <= set(FOUR)
    assert MLPHead().fit(*_data()[:2]).model_[-1].early_stopping


@pytest.mark.slow  # covered in the default run by the heads in-process in this file; save and predict: tests/test_heads_predict.py
@pytest.mark.e2e
def test_evaluate_sad_first_over_standard_heads_tuned_saved_and_predicted(tmp_path):
    import csv

    from e2e_utils import read_json, run_script, speech_emodb_tree

    corpus = speech_emodb_tree(tmp_path / "emodb", speakers=("03", "08", "09"), texts=("a01", "a02"))
    run = tmp_path / "run"
    run_script("evaluate.py", "encoder=egemaps", "classifier=sad_first", "classifier@classifier.first_stage=mlp",
               "classifier@classifier.second_stage=knn", "tuning.enabled=true", "save_model=true", f"data.root={corpus}",
               "logger=none", f"hydra.run.dir={run}", tmp=tmp_path)
    res = read_json(run / "results.json")
    assert res["tuning"]["grid"] == MLPHead.default_grid  # the first stage's grid, tied to the stages that have it
    assert all(set(f["tuned"]["best_params"]) == {"first_stage__hidden_size", "first_stage__alpha"} for f in res["folds"])
    assert res["ua"] > 0.25  # above chance on 24 utterances of 3 speakers
    out = tmp_path / "pred"
    run_script("predict.py", f"model={run / 'model'}", f"inputs=[{corpus / 'wav'}]", f"hydra.run.dir={out}", tmp=tmp_path)
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 3 * 2 * 5 and {r["label"] for r in rows} <= set(FOUR)
