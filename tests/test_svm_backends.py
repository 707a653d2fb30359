"""classifier.backend: sklearnex (pairwise, libsvm's vote), the Nystroem approximation, the
memory check before a fit, and the keys that validate them."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from deeptalk_ser.evaluation.classifiers import SVMClassifier, sad_first, select_backend
from deeptalk_ser.evaluation.classifiers import backend as be
from deeptalk_ser.utils.errors import ConfigError

needs_sklearnex = pytest.mark.skipif(not be.sklearnex_available(), reason="scikit-learn-intelex not installed")


def clusters(n: int = 400, d: int = 16, k: int = 4, seed: int = 0, spread: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    y = rng.integers(0, k, n)
    X = (centres[y] + spread * rng.normal(size=(n, d))).astype(np.float32)
    names = np.array(["angry", "happy", "neutral", "sad"][:k], dtype=object)
    return X, names[y]


def test_auto_prefers_fastest_exact_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(be, "cuml_available", lambda: False)
    monkeypatch.setattr(be, "sklearnex_available", lambda: True)
    assert select_backend("auto") == "sklearnex"
    monkeypatch.setattr(be, "sklearnex_available", lambda: False)
    assert select_backend("auto") == "sklearn"
    with pytest.raises(ConfigError, match="classifier.backend.*scikit-learn-intelex"):
        select_backend("sklearnex")
    monkeypatch.setattr(be, "cuml_available", lambda: True)
    assert select_backend("auto") == "cuml"
    assert select_backend("nystroem") == "nystroem"
    with pytest.raises(ConfigError, match="nystroem"):  # the message lists the choices
        select_backend("thundersvm")


@pytest.mark.parametrize("key,value", [("cache_size", 0), ("cache_size", "big"), ("n_components", 0),
                                       ("n_components", 2.5), ("approx_head", "lasso"), ("C", -1.0)])
def test_check_params_names_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"classifier.{key}"):
        SVMClassifier(**{key: value}).check_params()
    with pytest.raises(ConfigError, match=f"classifier.{key}"):
        sad_first(**{key: value}).check_params()


@needs_sklearnex
def test_sklearnex_matches_libsvm() -> None:
    X, y = clusters(n=600, spread=1.6)
    Xte, yte = clusters(n=300, spread=1.6, seed=1)
    ref = SVMClassifier(backend="sklearn", C=1000.0, gamma="scale").fit(X, y).predict(Xte)
    fast = SVMClassifier(backend="sklearnex", C=1000.0, gamma="scale").fit(X, y)
    assert fast.backend_ == "sklearnex"
    assert np.mean(fast.predict(Xte) == ref) >= 0.98
    sad = sad_first(backend="sklearnex", C=10.0, gamma="scale").fit(X, y)
    assert set(sad.predict(Xte)) <= set(y)


def test_pairwise_vote_breaks_ties_to_the_earlier_class() -> None:
    class Const:
        def __init__(self, d: float) -> None:
            self.d = d

        def decision_function(self, X: np.ndarray) -> np.ndarray:
            return np.full(len(X), self.d)

    m = be.PairwiseSVC()
    m.classes_ = np.array([0, 1, 2])
    # 0 beats 1, 1 beats 2, 2 beats 0: a three-way tie, which libsvm gives to class 0
    m.pairs_ = [(0, 1, Const(-1.0)), (0, 2, Const(1.0)), (1, 2, Const(-1.0))]
    assert m.predict(np.zeros((2, 3))).tolist() == [0, 0]


@pytest.mark.parametrize("head", ["ridge", "linear_svc"])
def test_nystroem_is_close_to_exact(head: str) -> None:
    X, y = clusters(n=800, spread=1.2)
    Xte, yte = clusters(n=400, spread=1.2, seed=1)
    exact = np.mean(SVMClassifier(backend="sklearn", C=10.0, gamma="scale").fit(X, y).predict(Xte) == yte)
    clf = SVMClassifier(backend="nystroem", C=10.0, gamma="scale", n_components=300, approx_head=head).fit(X, y)
    approx = np.mean(clf.predict(Xte) == yte)
    assert clf.backend_ == "nystroem" and clf.describe()["n_components"] == 300
    assert approx >= exact - 0.05, (approx, exact)
    assert clone(clf).get_params()["n_components"] == 300  # still a scikit-learn estimator
    sad = sad_first(backend="nystroem", C=10.0, gamma="scale", n_components=200).fit(X, y)
    assert np.mean(sad.predict(Xte) == yte) >= exact - 0.1


def test_a_fit_that_would_not_fit_is_refused_first(monkeypatch: pytest.MonkeyPatch) -> None:
    need = be.estimate_fit_bytes("nystroem", 100_000, 256, n_components=1024)
    assert 1 << 30 < need < 4 << 30  # about 1.6 GiB: 3 float32 copies of 100k x 1024 plus the rest
    with pytest.raises(ConfigError, match="classifier.backend.*lower classifier.n_components"):
        be.check_fits("nystroem", 100_000, 256, n_components=1024, available=need)
    assert be.check_fits("nystroem", 100_000, 256, n_components=1024, available=2 * need) == need
    monkeypatch.setattr(be, "available_memory_bytes", lambda: 10 << 20)  # 10 MB free
    with pytest.raises(ConfigError, match="cache_size"):
        SVMClassifier(backend="sklearn").check_fits(1000, 256)
    X, y = clusters(n=50)
    with pytest.raises(ConfigError, match="GiB available"):  # fit checks too, before any work
        SVMClassifier(backend="sklearn").fit(X, y)
