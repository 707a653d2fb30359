"""Saved emotion heads: a classifier fitted on all of a run's data, in files that cannot execute
code when loaded.

``<run dir>/model/`` holds ``head.json`` (what the head is: classifier parameters, classes, task,
the encoder config and windowing its features came from, library versions) and one
``*.skops`` file per fitted scikit-learn model (a flat SVM has one, Sad-First two). skops writes
an object tree, not a pickle; loading refuses every type that is not scikit-learn's or numpy's,
so a tampered or foreign file is refused with its types named instead of run. Our own estimator
objects are never serialised: they are rebuilt from ``head.json`` around the loaded models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from deeptalk_ser.evaluation.classifiers.hierarchical import SadFirstClassifier
from deeptalk_ser.evaluation.classifiers.svm import SVMClassifier
from deeptalk_ser.utils.errors import ConfigError, DataError
from deeptalk_ser.utils.io import atomic_path, write_json_atomic

HEAD_FORMAT = 1
#: module prefixes whose types a head file may contain
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "builtins.", "scipy.")


def _versions() -> dict[str, str]:
    import sklearn
    import skops

    return {"scikit-learn": sklearn.__version__, "skops": skops.__version__, "numpy": np.__version__}


def _dump_model(model: Any, path: Path) -> None:
    import skops.io as sio

    with atomic_path(path) as tmp:
        sio.dump(model, tmp)
    foreign = [t for t in sio.get_untrusted_types(file=path) if not t.startswith(TRUSTED_PREFIXES)]
    if foreign:
        path.unlink()
        raise ConfigError("classifier.backend", f"its fitted model holds types {foreign} that cannot be saved "
                                                "safely; save_model needs classifier.backend=sklearn")


def _load_model(path: Path) -> Any:
    import skops.io as sio

    if not path.is_file():
        raise DataError(path, "saved head model file missing")
    types = sio.get_untrusted_types(file=path)
    foreign = [t for t in types if not t.startswith(TRUSTED_PREFIXES)]
    if foreign:
        raise DataError(path, f"refused: holds types outside scikit-learn/numpy ({foreign}); a head file may "
                              "only contain library types")
    return sio.load(path, trusted=types)


def _svm_part(clf: SVMClassifier) -> dict[str, Any]:
    if getattr(clf, "backend_", "sklearn") != "sklearn":
        raise ConfigError("classifier.backend", f"the head was fitted with {clf.backend_}; save_model needs "
                                                "classifier.backend=sklearn (a portable CPU model)")
    return {"classes": [str(c) for c in clf.classes_], "n_features": int(clf.n_features_in_)}


def save_head(clf: SVMClassifier | SadFirstClassifier, out: str | Path, meta: dict[str, Any]) -> Path:
    """Write a fitted head and ``meta`` (task, classes, encoder config, ...) to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(clf, SadFirstClassifier):
        stages = {"stage1": clf.stage1_, "stage2": clf.stage2_}
        kind = "sad_first"
    elif isinstance(clf, SVMClassifier):
        stages, kind = {"flat": clf}, "svm"
    else:
        raise ConfigError("classifier", f"save_model supports svm and hierarchical heads, not {type(clf).__name__}")
    parts = {}
    for name, stage in stages.items():
        parts[name] = _svm_part(stage)
        _dump_model(stage.model_, out / f"{name}.skops")
    write_json_atomic(out / "head.json", {"format": HEAD_FORMAT, "kind": kind, "params": clf.get_params(),
                                          "parts": parts, "versions": _versions(), **meta})
    return out


def _rebuild_svm(params: dict[str, Any], part: dict[str, Any], model: Any) -> SVMClassifier:
    keys = SVMClassifier().get_params().keys()
    svm = SVMClassifier(**{k: v for k, v in params.items() if k in keys})
    svm.classes_ = np.array(part["classes"], dtype=object)
    svm.model_, svm.backend_, svm.n_features_in_ = model, "sklearn", part["n_features"]
    return svm


def load_head(model_dir: str | Path) -> tuple[SVMClassifier | SadFirstClassifier, dict[str, Any]]:
    """The head saved in ``model_dir`` and its ``head.json`` record."""
    model_dir = Path(model_dir)
    info_path = model_dir / "head.json"
    if not info_path.is_file():
        raise DataError(info_path, "not a saved head (run evaluate.py save_model=true; the head is in <run dir>/model)")
    info = json.loads(info_path.read_text())
    if info.get("format") != HEAD_FORMAT:
        raise DataError(info_path, f"head format {info.get('format')!r}, this version reads {HEAD_FORMAT}")
    if info["versions"]["scikit-learn"] != _versions()["scikit-learn"]:
        raise DataError(info_path, f"saved with scikit-learn {info['versions']['scikit-learn']}, this environment has "
                                   f"{_versions()['scikit-learn']}: refit the head (models are not portable across versions)")
    params = info["params"]
    if info["kind"] == "svm":
        return _rebuild_svm(params, info["parts"]["flat"], _load_model(model_dir / "flat.skops")), info
    head = SadFirstClassifier(**params)
    head.stage1_ = _rebuild_svm(params, info["parts"]["stage1"], _load_model(model_dir / "stage1.skops"))
    head.stage2_ = _rebuild_svm(params, info["parts"]["stage2"], _load_model(model_dir / "stage2.skops"))
    head.backend_ = "sklearn"
    head.classes_ = np.array(sorted(set(head.stage2_.classes_) | {head.first_class}), dtype=object)
    head.n_features_in_ = head.stage1_.n_features_in_
    return head, info


def class_scores(clf: SVMClassifier | SadFirstClassifier, X: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Per-class scores for tables: the SVM's one-vs-rest decision values (flat head), or for
    Sad-First the first stage's sad-vs-rest value and the second stage's values for the others."""
    X = np.asarray(X, np.float32)

    def ovr(svm: SVMClassifier) -> np.ndarray:
        d = np.asarray(svm.model_.decision_function(X), dtype=np.float64)
        return d[:, None] if d.ndim == 1 else d

    if isinstance(clf, SadFirstClassifier):
        first = ovr(clf.stage1_)
        sign = 1.0 if list(clf.stage1_.classes_).index(clf.first_class) == 1 else -1.0
        names = [clf.first_class] + [str(c) for c in clf.stage2_.classes_]
        return names, np.concatenate([sign * first[:, :1], ovr(clf.stage2_)], axis=1)
    d = ovr(clf)
    if d.shape[1] == 1:  # two classes: one value, positive for classes_[1]
        d = np.concatenate([-d, d], axis=1)
    return [str(c) for c in clf.classes_], d
