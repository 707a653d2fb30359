"""The flat RBF SVM, its backend choice, and the Sad-First hierarchical head."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from deeptalk_ser.evaluation.classifiers import SadFirstClassifier, SVMClassifier, sad_first, select_backend
from deeptalk_ser.evaluation.classifiers.hierarchical import REST
from deeptalk_ser.evaluation.classifiers.svm import undersample

FOUR = ["angry", "sad", "happy", "neutral"]


def blobs(counts: dict[str, int], dim: int = 4, spread: float = 0.3, sep: float = 3.0, seed: int = 0):
    """Gaussian blobs, class i centred at ``sep`` on axis i (so far apart relative to ``spread``)."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for i, (c, n) in enumerate(counts.items()):
        centre = np.zeros(dim)
        centre[i % dim] = sep
        X.append(centre + spread * rng.standard_normal((n, dim)))
        y += [c] * n
    return np.concatenate(X).astype(np.float32), np.array(y, dtype=object)


# -------------------------------------------------------------------------- SVM


def test_separable_blobs_high_accuracy():
    Xtr, ytr = blobs({"a": 40, "b": 40, "c": 40}, seed=0)
    Xte, yte = blobs({"a": 30, "b": 30, "c": 30}, seed=1)
    clf = SVMClassifier(backend="sklearn").fit(Xtr, ytr)
    pred = clf.predict(Xte)
    assert pred.dtype == object and set(pred) <= {"a", "b", "c"}
    assert np.mean(pred == yte) >= 0.97
    assert clf.n_train_ == 120


def test_balance_undersamples_to_smallest_class():
    X, y = blobs({"a": 30, "b": 20, "c": 7})
    clf = SVMClassifier(backend="sklearn", balance=True, seed=1).fit(X, y)
    assert clf.n_train_ == 21  # 3 classes x 7
    keep = undersample(y, seed=1)
    assert Counter(y[keep]) == {"a": 7, "b": 7, "c": 7}
    assert len(set(keep.tolist())) == 21 and np.all(np.diff(keep) > 0)
    assert SVMClassifier(backend="sklearn", balance=False).fit(X, y).n_train_ == 57


def test_standardize_uses_training_statistics_only():
    rng = np.random.default_rng(0)
    # feature 0 separates the classes on a unit scale, feature 1 is noise on a 1e4 scale
    Xtr = np.column_stack([np.r_[rng.normal(-1, .2, 30), rng.normal(1, .2, 30)], rng.normal(0, 1e4, 60)])
    ytr = np.array(["a"] * 30 + ["b"] * 30, dtype=object)
    clf = SVMClassifier(backend="sklearn", standardize=True).fit(Xtr, ytr)
    scaler = clf.model_.named_steps["scale"]
    np.testing.assert_allclose(scaler.mean_, Xtr.astype(np.float32).mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(scaler.scale_, Xtr.astype(np.float32).std(axis=0), rtol=1e-5)
    # test rows from a shifted distribution: scaling must not depend on the test batch
    Xte = np.column_stack([np.r_[rng.normal(-1, .2, 10), rng.normal(1, .2, 10)], rng.normal(5e4, 1e3, 20)])
    batch = clf.predict(Xte)
    one_by_one = np.array([clf.predict(Xte[i:i + 1])[0] for i in range(len(Xte))], dtype=object)
    np.testing.assert_array_equal(batch, one_by_one)
    # a constant training feature gets std 1 (no division by zero)
    const = SVMClassifier(backend="sklearn", standardize=True).fit(np.column_stack([Xtr[:, 0], np.ones(60)]), ytr)
    assert const.model_.named_steps["scale"].scale_[1] == 1.0
    assert not isinstance(SVMClassifier(backend="sklearn").fit(Xtr, ytr).model_, Pipeline)  # default: raw SVC


def test_standardize_makes_large_scale_noise_harmless():
    def make(n, seed):
        r = np.random.default_rng(seed)
        lab = r.integers(0, 2, n)
        return np.column_stack([np.where(lab, 1.0, -1.0) + r.normal(0, .2, n), r.normal(0, 1e4, n)]), \
            np.where(lab, "b", "a").astype(object)

    Xtr, ytr = make(80, 0)
    Xte, yte = make(80, 1)
    raw = np.mean(SVMClassifier(backend="sklearn").fit(Xtr, ytr).predict(Xte) == yte)
    std = np.mean(SVMClassifier(backend="sklearn", standardize=True).fit(Xtr, ytr).predict(Xte) == yte)
    assert std >= 0.95 and raw < 0.8


def _zscore_reference(Xtr, ytr, Xte, **kw):
    """The hand-written standardisation the head had before StandardScaler: float32 mean/std of
    the training rows, std 1 where it is 0."""
    Xtr, Xte = Xtr.astype(np.float32), Xte.astype(np.float32)
    mean, std = Xtr.mean(axis=0), Xtr.std(axis=0)
    std = np.where(std > 0, std, 1.0).astype(np.float32)
    return SVMClassifier(backend="sklearn", **kw).fit((Xtr - mean) / std, ytr).predict((Xte - mean) / std)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_standardize_pipeline_equals_manual_zscoring(seed):
    rng = np.random.default_rng(seed)
    scales = np.array([1.0, 50.0, 0.01, 1e3, 0.0])  # the last feature is constant
    Xtr = (rng.standard_normal((90, 5)) * scales + 3.0).astype(np.float32)
    ytr = np.array(["a", "b", "c"], dtype=object)[rng.integers(0, 3, 90)]
    Xtr[:, 0] += np.where(ytr == "a", 1.5, 0.0)  # some signal, so the SVM is not trivial
    Xte = (rng.standard_normal((60, 5)) * scales + 3.0).astype(np.float32)
    clf = SVMClassifier(backend="sklearn", standardize=True, C=10.0, gamma=0.5).fit(Xtr, ytr)
    assert isinstance(clf.model_, Pipeline) and isinstance(clf.model_.named_steps["scale"], StandardScaler)
    pred = clf.predict(Xte)
    ref = _zscore_reference(Xtr, ytr, Xte, C=10.0, gamma=0.5)
    np.testing.assert_array_equal(pred, ref)
    assert len(set(pred)) > 1  # not a constant prediction that would match anything
    # without standardisation the same data gives other predictions: the test can fail
    assert not np.array_equal(SVMClassifier(backend="sklearn", C=10.0, gamma=0.5).fit(Xtr, ytr).predict(Xte), ref)


def test_class_order_sets_classes_order():
    X, y = blobs({"a": 10, "b": 10, "c": 10})
    assert SVMClassifier(backend="sklearn").fit(X, y).classes_.tolist() == ["a", "b", "c"]
    clf = SVMClassifier(backend="sklearn", class_order=["c", "a", "b"]).fit(X, y)
    assert clf.classes_.tolist() == ["c", "a", "b"]
    # absent classes are dropped, unlisted present classes follow in sorted order
    clf = SVMClassifier(backend="sklearn", class_order=["zzz", "b"]).fit(X, y)
    assert clf.classes_.tolist() == ["b", "a", "c"]
    Xte, yte = blobs({"a": 5, "b": 5, "c": 5}, seed=3)
    assert np.mean(clf.predict(Xte) == yte) >= 0.9  # labels decoded through the new order


def test_fit_needs_two_classes():
    with pytest.raises(ValueError, match="2 classes"):
        SVMClassifier(backend="sklearn").fit(np.zeros((3, 2)), np.array(["a"] * 3, dtype=object))


def test_backend_recorded_as_sklearn():
    clf = SVMClassifier(backend="sklearn", C=10.0, gamma="scale")
    assert clf.backend == clf.resolved_backend == "sklearn"
    assert clf.describe() == {"name": "svm", "C": 10.0, "gamma": "scale", "standardize": False, "balance": False,
                              "backend": "sklearn", "class_order": None}


def test_select_backend_without_gpu(monkeypatch):
    import torch

    from deeptalk_ser.evaluation.classifiers import backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(backend, "sklearnex_available", lambda: False)  # auto prefers it when installed
    assert select_backend("auto") == "sklearn"
    assert select_backend("sklearn") == "sklearn"
    assert SVMClassifier().resolved_backend == "sklearn"
    assert SVMClassifier().backend == "auto"  # the parameter stays as given (sklearn's get_params/clone)
    assert sad_first().resolved_backend == "sklearn"
    assert SVMClassifier().fit(*blobs({"a": 5, "b": 5})).backend_ == "sklearn"
    with pytest.raises(ValueError, match="cuML"):
        select_backend("cuml")
    with pytest.raises(ValueError, match="backend"):
        select_backend("libsvm")


# ------------------------------------------------------------- scikit-learn API


def test_clone_gives_an_unfitted_copy_with_the_same_params():
    clf = SVMClassifier(C=5, standardize=True)
    copy = clone(clf)
    assert copy is not clf and copy.get_params() == clf.get_params()
    assert copy.get_params()["C"] == 5 and copy.get_params()["standardize"] is True
    assert not hasattr(copy, "model_") and not hasattr(copy, "classes_")
    fitted = SVMClassifier(backend="sklearn", C=5).fit(*blobs({"a": 10, "b": 10}))
    assert not hasattr(clone(fitted), "model_")
    assert is_classifier(clf) and is_classifier(sad_first())


def test_svm_get_params_round_trip():
    params = {"C": 3.0, "gamma": "scale", "standardize": True, "balance": True, "backend": "sklearn", "seed": 7,
              "name": "flat", "class_order": ["b", "a"], "cache_size": 500.0, "n_components": 64,
              "approx_head": "linear_svc", "blocks": [4, 2]}
    clf = SVMClassifier(**params)
    assert clf.get_params() == params
    assert SVMClassifier().set_params(**params).get_params() == params
    assert SVMClassifier().get_params() == {"C": 1000.0, "gamma": 0.1, "standardize": False, "balance": False,
                                            "backend": "auto", "seed": 0, "name": "svm", "class_order": None,
                                            "cache_size": 200.0, "n_components": 1024, "approx_head": "ridge",
                                            "blocks": None}


def test_sad_first_is_a_meta_estimator():
    """Stages are estimator parameters (scikit-learn style): clone copies them, ``first_stage__C``
    reaches into one, and the fitted stages are clones carrying the given parameters."""
    svm = {"C": 10.0, "gamma": 0.5, "standardize": True, "balance": True, "backend": "sklearn", "seed": 3,
           "name": "svm", "class_order": ["sad", "happy"], "cache_size": 300.0, "n_components": 128,
           "approx_head": "ridge", "blocks": None}
    clf = sad_first(first_class="angry", name="h", **{k: v for k, v in svm.items() if k != "name"})
    params = clf.get_params(deep=True)
    assert params["first_class"] == "angry" and params["second_stage"] is None
    assert {k[len("first_stage__"):]: v for k, v in params.items() if k.startswith("first_stage__")} == svm
    copy = clone(clf)
    plain = {k: v for k, v in params.items() if k != "first_stage"}
    assert copy.first_stage is not clf.first_stage
    assert {k: v for k, v in copy.get_params(deep=True).items() if k != "first_stage"} == plain
    fitted = clf.fit(*blobs({c: 10 for c in FOUR}))
    for stage in (fitted.stage1_, fitted.stage2_):  # second_stage=None: a clone of the first
        assert stage.get_params() == svm and stage is not clf.first_stage
    assert not hasattr(clf.first_stage, "model_")  # the parameter itself stays unfitted
    other = SadFirstClassifier(first_stage=SVMClassifier(backend="sklearn", C=1.0),
                               second_stage=SVMClassifier(backend="sklearn", C=100.0)).fit(*blobs({c: 10 for c in FOUR}))
    assert (other.stage1_.C, other.stage2_.C) == (1.0, 100.0)
    assert clone(other).set_params(second_stage__C=5.0).second_stage.C == 5.0


@pytest.mark.parametrize("make", [lambda: SVMClassifier(backend="sklearn"),
                                  lambda: SVMClassifier(backend="sklearn", standardize=True, balance=True),
                                  lambda: sad_first(backend="sklearn")])
def test_cross_val_predict_with_leave_one_group_out(make):
    X, y = blobs({c: 24 for c in FOUR}, spread=0.4, seed=2)
    groups = np.tile(np.arange(4), len(y) // 4)  # 4 "speakers", each with every class
    pred = cross_val_predict(make(), X, y, groups=groups, cv=LeaveOneGroupOut())
    assert pred.shape == y.shape and set(pred) <= set(FOUR)
    assert np.mean(pred == y) >= 0.9


# ------------------------------------------------------------------- Sad-First


@pytest.fixture
def four_class():
    Xtr, ytr = blobs({c: 25 for c in FOUR}, dim=4, spread=0.6, sep=2.0, seed=0)
    return Xtr, ytr


def test_sad_first_outputs_only_the_four_classes(four_class):
    Xtr, ytr = four_class
    clf = sad_first(backend="sklearn").fit(Xtr, ytr)
    assert clf.uses_fine_labels is True
    rng = np.random.default_rng(5)
    Xany = rng.uniform(-3, 5, size=(300, 4)).astype(np.float32)
    pred = clf.predict(Xany)
    assert set(pred) <= set(FOUR) and REST not in set(pred)
    Xte, yte = blobs({c: 20 for c in FOUR}, dim=4, spread=0.6, sep=2.0, seed=9)
    assert np.mean(clf.predict(Xte) == yte) >= 0.85


def test_stage_one_sad_wins(four_class):
    Xtr, ytr = four_class
    clf = sad_first(backend="sklearn").fit(Xtr, ytr)
    rng = np.random.default_rng(6)
    Xany = rng.uniform(-3, 5, size=(400, 4)).astype(np.float32)
    s1, s2, final = clf.stage1_.predict(Xany), clf.stage2_.predict(Xany), clf.predict(Xany)
    said_sad = s1 == "sad"
    assert said_sad.any() and (~said_sad).any()
    assert "sad" not in set(s2)  # stage 2 never saw sad rows ...
    assert np.all(final[said_sad] == "sad")  # ... so these can only come from stage 1
    np.testing.assert_array_equal(final[~said_sad], s2[~said_sad])
    assert set(clf.stage1_.classes_) == {"sad", REST}
    assert set(clf.stage2_.classes_) == {"angry", "happy", "neutral"}
    assert clf.stage2_.n_train_ == 75


def test_sad_first_requires_sad(four_class):
    Xtr, ytr = four_class
    keep = ytr != "sad"
    with pytest.raises(ValueError, match="sad"):
        sad_first(backend="sklearn").fit(Xtr[keep], ytr[keep])


def test_sad_first_describe():
    d = sad_first(backend="sklearn", balance=True).describe()
    assert d["name"] == "hierarchical" and d["first_class"] == "sad" and d["first_stage"]["balance"] is True
    assert d["first_stage"]["backend"] == d["second_stage"]["backend"] == "sklearn"
