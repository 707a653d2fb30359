"""GPU paths run for real where a GPU exists (skipped with a reason elsewhere)."""

from __future__ import annotations

import numpy as np

from markers import requires_cuml

from deeptalk_ser.evaluation.classifiers.svm import SVMClassifier


@requires_cuml()
def test_cuml_and_sklearn_svms_agree_on_separable_clusters():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 256)).astype(np.float32)
    y = np.repeat(np.array(["angry", "sad", "happy", "neutral"], dtype=object), 50)
    X = centres[np.repeat(np.arange(4), 50)] + 0.3 * rng.standard_normal((200, 256)).astype(np.float32)
    gpu = SVMClassifier(C=1000, gamma=0.01, backend="cuml").fit(X[::2], y[::2])
    cpu = SVMClassifier(C=1000, gamma=0.01, backend="sklearn").fit(X[::2], y[::2])
    assert gpu.resolved_backend == "cuml"
    agree = np.mean(gpu.predict(X[1::2]) == cpu.predict(X[1::2]))
    assert agree >= 0.99, f"cuML and scikit-learn agree on only {agree:.2%} of test rows"
