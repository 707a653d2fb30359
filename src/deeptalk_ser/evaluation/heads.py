"""Saved emotion heads: a classifier fitted on all of a run's data, in files that cannot execute
code when loaded.

``<run dir>/model/`` holds ``head.json`` (what the head is: classifier parameters, classes, task,
the encoder option and windowing its features came from, library versions) and one ``*.skops``
file per fitted scikit-learn model (a flat SVM has one, Sad-First two). A model folder is
something users download and share, so both files are treated as hostile data:

- every node of a ``*.skops`` object tree must be one of :data:`ALLOWED_NODES` (the exact
  estimator classes we save, plain containers, JSON scalars, numpy arrays) before skops builds
  anything: no ``builtins`` wildcard, no reduce-constructors, functions or methods;
- ``head.json`` may only hold plain values under known keys; its encoder record is checked
  against the encoder options the project offers (``embedding/encoders/options.py``).

Our own estimator objects are never serialised: they are rebuilt from ``head.json`` around the
loaded models. Design notes: ``docs/design/saved_heads.md``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from deeptalk_ser.embedding.encoders.options import PLAIN, saved_encoder_record, validated_encoder_config
from deeptalk_ser.evaluation.classifiers.hierarchical import SadFirstClassifier
from deeptalk_ser.evaluation.classifiers.standard import KNNClassifier, LinearSVMClassifier, LogRegClassifier, MLPHead
from deeptalk_ser.evaluation.classifiers.svm import SVMClassifier
from deeptalk_ser.utils.errors import ConfigError, DataError
from deeptalk_ser.utils.io import atomic_path, write_json_atomic

#: format 2 names the encoder option (``encoder_option``), stores no ``_target_`` and nests Sad-First's
#: stage parameters; format 1 (flat SVM parameters, the project's ``_target_``) is still read for SVM heads
HEAD_FORMAT = 2
READABLE_FORMATS = (1, 2)
#: the fitted objects a head is made of (module, class): SVC, optionally behind a scaler and, for
#: ``encoder=fusion``, the per-block scaler (our own class: plain parameters, numpy arrays)
HEAD_ESTIMATORS = frozenset({("sklearn.svm._classes", "SVC"), ("sklearn.pipeline", "Pipeline"),
                             ("sklearn.preprocessing._data", "StandardScaler"),
                             ("deeptalk_ser.evaluation.classifiers.fusion", "BlockScaler"),
                             # the standard heads (classifiers/standard.py); an MLP predicts through its label binarizer
                             ("sklearn.linear_model._logistic", "LogisticRegression"), ("sklearn.svm._classes", "LinearSVC"),
                             ("sklearn.neural_network._multilayer_perceptron", "MLPClassifier"),
                             ("sklearn.preprocessing._label", "LabelBinarizer"),
                             ("sklearn.neighbors._classification", "KNeighborsClassifier")})
#: every (skops loader, module, class) a head's object tree may contain; anything else is refused
ALLOWED_NODES = frozenset(
    {("ObjectNode", m, c) for m, c in HEAD_ESTIMATORS}
    | {("DictNode", "builtins", "dict"), ("ListNode", "builtins", "list"), ("TupleNode", "builtins", "tuple"),
       ("TypeNode", "builtins", "str")}  # skops records dict key types as the type str
    | {("JsonNode", "builtins", t) for t in ("str", "int", "float", "bool", "NoneType")}
    | {("NdArrayNode", "numpy", t) for t in ("ndarray", "float64", "float32", "int64", "int32")})
#: keys of ``head.json`` and of its ``labels`` record; the classifier ``params`` are checked by class
RECORD_KEYS = frozenset({"format", "kind", "params", "parts", "versions", "task", "classes", "labels",
                         "uses_fine_labels", "n_train", "data", "encoder", "encoder_option", "store_key"})
LABEL_KEYS = frozenset({"name", "classes", "label_map", "coarse_map"})
#: the flat heads a saved head (or a Sad-First stage) may be, by ``kind``
FLAT_HEADS: dict[str, type] = {"svm": SVMClassifier, "logreg": LogRegClassifier, "linear_svm": LinearSVMClassifier,
                               "mlp": MLPHead, "knn": KNNClassifier}
HEAD_CLASSES: dict[str, type] = {**FLAT_HEADS, "sad_first": SadFirstClassifier}
STAGES = ("first_stage", "second_stage")
MAX_SCHEMA_BYTES = 64 << 20


def _versions() -> dict[str, str]:
    import sklearn
    import skops

    return {"scikit-learn": sklearn.__version__, "skops": skops.__version__, "numpy": np.__version__}


def _node_types(path: Path) -> set[tuple[str, str, str]]:
    """(loader, module, class) of every node in a skops file's schema, read as JSON: nothing is
    imported or built. A file that is not a skops archive is a :class:`DataError`."""
    try:
        with zipfile.ZipFile(path) as zf:
            if zf.getinfo("schema.json").file_size > MAX_SCHEMA_BYTES:
                raise DataError(path, f"refused: schema.json over {MAX_SCHEMA_BYTES >> 20} MB")
            schema = json.loads(zf.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DataError(path, f"not a skops head file ({type(exc).__name__}: {exc})") from None
    found, stack = set(), [schema]
    while stack:  # iterative: a crafted file cannot exhaust the recursion limit
        node = stack.pop()
        if isinstance(node, dict):
            if "__loader__" in node:
                found.add((str(node["__loader__"]), str(node.get("__module__")), str(node.get("__class__"))))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _refused_nodes(path: Path) -> list[str]:
    return sorted(f"{m}.{c} ({loader})" for loader, m, c in _node_types(path) - ALLOWED_NODES)


def _dump_model(model: Any, path: Path) -> None:
    import skops.io as sio

    with atomic_path(path) as tmp:  # a model that could not be loaded back is never left behind
        sio.dump(model, tmp)
        foreign = _refused_nodes(tmp)
        if foreign:
            raise ConfigError("classifier.backend", f"its fitted model holds types {foreign} that a saved head "
                                                    "may not contain; save_model needs classifier.backend=sklearn")


def _load_model(path: Path) -> Any:
    """The fitted model in ``path``, built only after every node passed :data:`ALLOWED_NODES`."""
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    if not path.is_file():
        raise DataError(path, "saved head model file missing")
    foreign = _refused_nodes(path)
    if foreign:
        raise DataError(path, f"refused: holds {', '.join(foreign)}; a head file may only contain the estimator "
                              "classes, containers, scalars and numpy arrays a head is made of")
    try:
        return sio.load(path, trusted=sorted(f"{m}.{c}" for _, m, c in ALLOWED_NODES))
    except UntrustedTypesFoundException as exc:
        raise DataError(path, f"refused: {exc}") from None
    except Exception as exc:  # a malformed archive that passed the type check: still one line
        raise DataError(path, f"cannot load the saved model ({type(exc).__name__}: {exc})") from None


def _flat_kind(clf: Any) -> str:
    """The ``kind`` of a flat head (exact class: a subclass could carry other state)."""
    kind = next((k for k, cls in FLAT_HEADS.items() if type(clf) is cls), None)
    if kind is None:
        raise ConfigError("save_model", f"saved heads are {', '.join(FLAT_HEADS)} or Sad-First over them, not "
                                        f"{type(clf).__name__}")
    return kind


def _flat_part(clf: Any) -> dict[str, Any]:
    _flat_kind(clf)
    if getattr(clf, "backend_", "sklearn") != "sklearn":
        raise ConfigError("classifier.backend", f"the head was fitted with {clf.backend_}; save_model needs "
                                                "classifier.backend=sklearn (a portable CPU model)")
    return {"classes": [str(c) for c in clf.classes_], "n_features": int(clf.n_features_in_)}


def save_head(clf: Any, out: str | Path, meta: dict[str, Any]) -> Path:
    """Write a fitted head and ``meta`` (task, classes, encoder config, ...) to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(clf, SadFirstClassifier):
        stages = {"stage1": clf.stage1_, "stage2": clf.stage2_}
        kind = "sad_first"
    else:
        stages, kind = {"flat": clf}, _flat_kind(clf)
    parts = {}
    for name, stage in stages.items():
        parts[name] = _flat_part(stage)
        _dump_model(stage.model_, out / f"{name}.skops")
    meta = dict(meta)
    if "encoder" in meta:  # the option's name and its plain values; the class always comes from conf/encoder
        meta["encoder_option"], meta["encoder"] = saved_encoder_record(dict(meta["encoder"]))
        if meta["encoder_option"] is None:
            raise ConfigError("save_model", "only a head on the project's encoders (conf/encoder) can be saved")
    write_json_atomic(out / "head.json", {"format": HEAD_FORMAT, "kind": kind, "params": _head_params(clf),
                                          "parts": parts, "versions": _versions(), **meta})
    return out


def _head_params(clf: Any) -> dict[str, Any]:
    """Plain parameters: a flat head's own, or Sad-First's with each stage's parameters nested
    and the stages' kinds in ``stage_kinds``."""
    if isinstance(clf, SadFirstClassifier):
        stages = clf.stage_estimators()
        return {"first_class": clf.first_class, "name": clf.name,
                "stage_kinds": {k: _flat_kind(stages[k]) for k in STAGES},
                "first_stage": stages["first_stage"].get_params(),
                "second_stage": None if clf.second_stage is None else stages["second_stage"].get_params()}
    return clf.get_params()


def portable(make_classifier: Any) -> Any:
    """A fresh head on the scikit-learn backend everywhere (the stages too): the one whose fitted
    model is portable and saved without pickle."""
    from sklearn.base import clone

    clf = clone(make_classifier())
    return clf.set_params(**{k: "sklearn" for k in clf.get_params(deep=True) if k.split("__")[-1] == "backend"})


def _is_plain(value: Any) -> bool:
    return isinstance(value, PLAIN) or (isinstance(value, list) and all(isinstance(v, PLAIN) for v in value))


def _stage_kinds(params: dict[str, Any], path: Path) -> dict[str, str]:
    """Each Sad-First stage's flat kind (``svm`` where a format-2 head predates ``stage_kinds``)."""
    kinds = params.get("stage_kinds", {})
    if not isinstance(kinds, dict) or set(kinds) - set(STAGES) or not all(k in FLAT_HEADS for k in kinds.values()):
        raise DataError(path, f"refused: params.stage_kinds must map {list(STAGES)} to one of {sorted(FLAT_HEADS)}")
    return {k: kinds.get(k, "svm") for k in STAGES}


def _check_params(params: dict[str, Any], kind: str, path: Path, prefix: str = "params.") -> None:
    """Known parameters with plain values (Sad-First: its own, and each stage's as its kind's)."""
    allowed = set(HEAD_CLASSES[kind]().get_params()) if kind in FLAT_HEADS else {
        "first_class", "name", "first_stage", "second_stage", "stage_kinds"}
    kinds = _stage_kinds(params, path) if kind == "sad_first" else {}
    for key, value in params.items():
        if key == "stage_kinds" and kind == "sad_first":
            continue
        if key in STAGES and kind == "sad_first" and (isinstance(value, dict) or
                                                      (value is None and key == "second_stage")):
            if value is not None:
                _check_params(value, kinds[key], path, f"{prefix}{key}.")
        elif key not in allowed or not _is_plain(value):
            raise DataError(path, f"refused: {prefix}{key} is not a plain {HEAD_CLASSES[kind].__name__} parameter")


def _checked_record(info: Any, path: Path, allow_trust_checkpoint: bool) -> dict[str, Any]:
    """``head.json`` checked before anything is built from it: known keys only, classifier
    parameters and label maps of plain values, parts as this kind of head has them, and the
    encoder record validated against the project's encoder options."""
    if not isinstance(info, dict):
        raise DataError(path, "refused: not a JSON object")
    unknown = sorted(set(info) - RECORD_KEYS)
    if unknown:
        raise DataError(path, f"refused: unknown key(s) {unknown}")
    if info.get("format") not in READABLE_FORMATS:
        raise DataError(path, f"head format {info.get('format')!r}, this version reads {list(READABLE_FORMATS)} "
                              "(refit it with evaluate.py save_model=true)")
    kind = info.get("kind")
    if kind not in HEAD_CLASSES:
        raise DataError(path, f"refused: kind {kind!r} (known: {', '.join(HEAD_CLASSES)})")
    if info["format"] == 1 and kind == "sad_first":
        raise DataError(path, "a Sad-First head of format 1 (flat SVM parameters): refit it with evaluate.py save_model=true")
    params = info.get("params")
    if not isinstance(params, dict):
        raise DataError(path, "refused: params is not a mapping")
    _check_params(params, kind, path)
    expected = {"flat"} if kind in FLAT_HEADS else {"stage1", "stage2"}
    parts = info.get("parts")
    if not isinstance(parts, dict) or set(parts) != expected or not all(
            isinstance(p, dict) and isinstance(p.get("n_features"), int) and isinstance(p.get("classes"), list)
            and all(isinstance(c, str) for c in p["classes"]) for p in parts.values()):
        raise DataError(path, f"refused: parts must be {sorted(expected)}, each with classes and n_features")
    labels = info.get("labels")
    if labels is not None:
        if not isinstance(labels, dict) or set(labels) - LABEL_KEYS or not all(
                _is_plain(v) or (isinstance(v, dict) and all(isinstance(x, str) for x in v.values()))
                for v in labels.values()):
            raise DataError(path, f"refused: labels must hold only {sorted(LABEL_KEYS)} with plain values")
    if not isinstance(info.get("versions"), dict) or not isinstance(info["versions"].get("scikit-learn"), str):
        raise DataError(path, "refused: versions.scikit-learn missing")
    if "encoder" in info:
        info = {**info, "encoder": validated_encoder_config(info["encoder"], info.get("encoder_option"), path,
                                                            allow_trust_checkpoint)}
    return info


def _rebuild(kind: str, params: dict[str, Any], part: dict[str, Any], model: Any) -> Any:
    head = FLAT_HEADS[kind](**params)
    head.classes_ = np.array(part["classes"], dtype=object)
    head.model_, head.backend_, head.n_features_in_ = model, "sklearn", part["n_features"]
    return head


def load_head(model_dir: str | Path, allow_trust_checkpoint: bool = False
              ) -> tuple[Any, dict[str, Any]]:
    """The head saved in ``model_dir`` and its checked ``head.json`` record (its ``encoder`` a
    config of one of the project's encoders, with the project's ``_target_``)."""
    model_dir = Path(model_dir)
    info_path = model_dir / "head.json"
    if not info_path.is_file():
        raise DataError(info_path, "not a saved head (run evaluate.py save_model=true; the head is in <run dir>/model)")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:
        raise DataError(info_path, f"not JSON ({type(exc).__name__}: {exc})") from None
    info = _checked_record(info, info_path, allow_trust_checkpoint)
    if info["versions"]["scikit-learn"] != _versions()["scikit-learn"]:
        raise DataError(info_path, f"saved with scikit-learn {info['versions']['scikit-learn']}, this environment has "
                                   f"{_versions()['scikit-learn']}: refit the head (models are not portable across versions)")
    params = info["params"]
    if info["kind"] in FLAT_HEADS:
        return _rebuild(info["kind"], params, info["parts"]["flat"], _load_model(model_dir / "flat.skops")), info
    kinds = _stage_kinds(params, info_path)
    stages = {k: FLAT_HEADS[kinds[k]](**params[k]) if params.get(k) else None for k in STAGES}
    head = SadFirstClassifier(**stages, first_class=params.get("first_class", "sad"), name=params.get("name", "hierarchical"))
    stage_params = head.stage_estimators()
    kinds["second_stage"] = _flat_kind(stage_params["second_stage"])  # None: a copy of the first
    head.stage1_ = _rebuild(kinds["first_stage"], stage_params["first_stage"].get_params(), info["parts"]["stage1"],
                            _load_model(model_dir / "stage1.skops"))
    head.stage2_ = _rebuild(kinds["second_stage"], stage_params["second_stage"].get_params(), info["parts"]["stage2"],
                            _load_model(model_dir / "stage2.skops"))
    head.backend_ = "sklearn"
    head.classes_ = np.array(sorted(set(head.stage2_.classes_) | {head.first_class}), dtype=object)
    head.n_features_in_ = head.stage1_.n_features_in_
    return head, info


def class_scores(clf: Any, X: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Per-class scores for tables: the head's one-vs-rest decision values, or class probabilities
    where its model has no decision function (MLP, kNN); for Sad-First the first stage's value for
    ``first_class`` and the second stage's values for the others."""
    X = np.asarray(X, np.float32)

    def per_class(head: Any) -> np.ndarray:
        model = head.model_
        d = np.asarray(model.decision_function(X) if hasattr(model, "decision_function") else model.predict_proba(X),
                       dtype=np.float64)
        return np.stack([-d, d], axis=1) if d.ndim == 1 else d  # two classes: one value, positive for classes_[1]

    if isinstance(clf, SadFirstClassifier):
        first = per_class(clf.stage1_)[:, list(clf.stage1_.classes_).index(clf.first_class)]
        names = [clf.first_class] + [str(c) for c in clf.stage2_.classes_]
        return names, np.concatenate([first[:, None], per_class(clf.stage2_)], axis=1)
    return [str(c) for c in clf.classes_], per_class(clf)
