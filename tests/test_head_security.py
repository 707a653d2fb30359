"""A saved head is data: crafted ``*.skops`` and ``head.json`` files are refused before anything
they name is imported, built or called (issue 20, item 1)."""

from __future__ import annotations

import json
import wave
import zipfile
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from deeptalk_ser.evaluation.classifiers.hierarchical import sad_first
from deeptalk_ser.evaluation.classifiers.svm import SVMClassifier
from deeptalk_ser.evaluation.heads import ALLOWED_NODES, load_head, save_head
from deeptalk_ser.utils.errors import DataError

GE2E_TARGET = "deeptalk_ser.embedding.encoders.ge2e.GE2EEncoder"


def _fitted(kind: str = "svm"):
    rng = np.random.default_rng(0)
    y = np.array(["angry", "sad", "happy", "neutral"] * 10, dtype=object)
    X = (rng.standard_normal((len(y), 4)) + np.array([{"angry": 0, "sad": 1, "happy": 2, "neutral": 3}[c]
                                                      for c in y])[:, None]).astype(np.float32)
    clf = sad_first(backend="sklearn") if kind == "sad_first" else SVMClassifier(backend="sklearn")
    return clf.fit(X, y)


def _encoder_record() -> dict:
    return {"_target_": GE2E_TARGET, "device": "cpu", "partials_per_s": 1.3, "min_coverage": 0.75, "batch_size": 64,
            "frontend": {"sample_rate": 16000, "resample_quality": "HQ", "normalize_dbfs": -30, "increase_only": True,
                         "vad": {"enabled": False}},
            "windowing": {"window_s": None, "hop_s": 0.01, "renormalize": False}}


def _saved(tmp_path: Path, kind: str = "svm") -> Path:
    return save_head(_fitted(kind), tmp_path / "model", {"task": "er", "encoder": _encoder_record()})


def _edit_record(model: Path, **changes) -> None:
    info = json.loads((model / "head.json").read_text())
    for dotted, value in changes.items():
        node, *path = dotted.split("__")
        target = info
        for key in [node, *path][:-1]:
            target = target[key]
        target[[node, *path][-1]] = value
    (model / "head.json").write_text(json.dumps(info))


def _exec_schema(code: str) -> dict:
    """The node a hostile skops file uses: ``builtins.exec`` built from a reduce-constructor."""
    arg = {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode", "content": json.dumps(code),
           "is_json": True, "__id__": 1}
    return {"__class__": "exec", "__module__": "builtins", "__loader__": "ConstructorFromReduceNode",
            "content": {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode", "content": [arg],
                        "__id__": 2}, "__id__": 3}


def _replace_schema(skops_file: Path, schema: dict) -> None:
    with zipfile.ZipFile(skops_file) as zf:
        real = json.loads(zf.read("schema.json"))
    schema = {**schema, "protocol": real["protocol"], "_skops_version": real.get("_skops_version")}
    with zipfile.ZipFile(skops_file, "w") as zf:
        zf.writestr("schema.json", json.dumps(schema))


def test_a_skops_file_that_calls_exec_is_refused_and_runs_nothing(tmp_path):
    model = _saved(tmp_path)
    marker = tmp_path / "pwned"
    _replace_schema(model / "flat.skops", _exec_schema(f"open({str(marker)!r}, 'w').write('x')"))
    with pytest.raises(DataError, match=r"flat\.skops: refused: holds builtins\.exec \(ConstructorFromReduceNode\)"):
        load_head(model)
    assert not marker.exists()


@pytest.mark.parametrize("node", [
    {"__class__": "getattr", "__module__": "builtins", "__loader__": "FunctionNode", "content": {}},
    {"__class__": "system", "__module__": "os", "__loader__": "ObjectNode", "content": None},
    {"__class__": "Tree", "__module__": "sklearn.tree._tree", "__loader__": "ReduceNode", "content": None},
    {"__class__": "dict", "__module__": "builtins", "__loader__": "NoSuchNode", "content": {}},
])
def test_every_node_outside_the_allow_list_is_refused(tmp_path, node):
    model = _saved(tmp_path)
    wrapped = {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "content": [node]}
    _replace_schema(model / "flat.skops", wrapped)
    with pytest.raises(DataError, match=f"refused: holds {node['__module__']}.{node['__class__']}"):
        load_head(model)


def test_not_an_archive_is_one_line(tmp_path):
    model = _saved(tmp_path)
    (model / "flat.skops").write_bytes(b"\x80\x04not a zip")
    with pytest.raises(DataError, match="not a skops head file"):
        load_head(model)


@pytest.mark.parametrize("kind", ["svm", "sad_first"])
def test_real_heads_use_only_allowed_nodes_and_load(tmp_path, kind):
    """The allow-list is exact, not loose: what save_head writes passes it and loads."""
    from deeptalk_ser.evaluation.heads import _node_types

    model = _saved(tmp_path, kind)
    for f in model.glob("*.skops"):
        assert _node_types(f) <= ALLOWED_NODES
    head, info = load_head(model)
    assert info["encoder"]["_target_"] == GE2E_TARGET and info["encoder_option"] == "ge2e"
    assert "_target_" not in json.loads((model / "head.json").read_text())["encoder"]  # the file names no class
    assert set(head.predict(np.zeros((2, 4), np.float32))) <= {"angry", "sad", "happy", "neutral"}


def test_standardised_head_loads(tmp_path):
    X = np.random.default_rng(1).standard_normal((40, 3)).astype(np.float32)
    y = np.array(["angry", "sad"] * 20, dtype=object)
    clf = SVMClassifier(backend="sklearn", standardize=True, gamma="scale").fit(X, y)
    save_head(clf, tmp_path / "m", {})
    assert (load_head(tmp_path / "m")[0].predict(X) == clf.predict(X)).all()


@pytest.mark.parametrize("change, message", [
    ({"encoder___target_": "builtins.open"}, r"encoder\._target_ 'builtins\.open' is not the class of encoder=ge2e"),
    ({"encoder_option": "evil"}, r"encoder 'evil' is not one this project offers"),
    ({"encoder__file": "/etc/passwd"}, r"encoder key 'file' is not an option of this encoder"),
    ({"encoder__frontend__vad__cmd": "rm"}, r"encoder key 'frontend\.vad\.cmd' is not an option"),
    ({"encoder__batch_size": {"_target_": "os.system", "command": "true"}}, r"'batch_size' holds dict"),
    ({"params__C": {"_target_": "os.system"}}, r"params\.C is not a plain SVMClassifier parameter"),
    ({"params__callback": "x"}, r"params\.callback is not a plain"),
    ({"kind": "pickle"}, r"kind 'pickle'"),
    ({"hydra": {"callbacks": {}}}, r"unknown key\(s\) \['hydra'\]"),
    ({"labels": {"name": "er", "_target_": "os.system"}}, r"labels must hold only"),
])
def test_a_crafted_head_json_is_refused_naming_the_key(tmp_path, change, message):
    model = _saved(tmp_path)
    _edit_record(model, **change)
    with pytest.raises(DataError, match=message) as err:
        load_head(model)
    assert str(err.value).startswith(str(model / "head.json"))


def test_trust_checkpoint_only_from_the_user(tmp_path):
    model = _saved(tmp_path)
    info = json.loads((model / "head.json").read_text())
    info["encoder_option"] = "deeptalk"
    info["encoder"] = {"checkpoint": str(tmp_path / "evil.pt"), "trust_checkpoint": True}
    (model / "head.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match="only you can allow that"):
        load_head(model)
    _, checked = load_head(model, allow_trust_checkpoint=True)
    assert checked["encoder"]["trust_checkpoint"] is True


def test_format_1_heads_with_the_projects_target_still_load(tmp_path):
    model = _saved(tmp_path)
    info = json.loads((model / "head.json").read_text())
    info["format"] = 1
    info.pop("encoder_option")
    info["encoder"]["_target_"] = GE2E_TARGET
    (model / "head.json").write_text(json.dumps(info))
    assert load_head(model)[1]["encoder"]["_target_"] == GE2E_TARGET


def test_predict_never_calls_what_head_json_names(tmp_path):
    """The reported attack: ``{"_target_": "builtins.open", "file": ..., "mode": "w"}`` truncated a file."""
    from deeptalk_ser.runs.predict import run

    model = _saved(tmp_path)
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    info = json.loads((model / "head.json").read_text())
    info.pop("encoder_option", None)
    info["encoder"] = {"_target_": "builtins.open", "file": str(victim), "mode": "w"}
    (model / "head.json").write_text(json.dumps(info))
    wav = tmp_path / "a.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(b"\x00\x01" * 16000)
    cfg = OmegaConf.create({"model": str(model), "inputs": [str(wav)], "output": str(tmp_path / "p.csv"),
                            "device": "cpu", "trust_checkpoint": False})
    with pytest.raises(DataError, match=r"encoder 'builtins\.open' is not one this project offers"):
        run(cfg)
    assert victim.read_text() == "keep me"


@pytest.mark.e2e
def test_predict_py_refuses_a_crafted_head_in_one_line(tmp_path):
    from e2e_utils import run_script

    model = _saved(tmp_path)
    marker = tmp_path / "pwned"
    _replace_schema(model / "flat.skops", _exec_schema(f"open({str(marker)!r}, 'w').write('x')"))
    proc = run_script("predict.py", f"model={model}", f"inputs=[{tmp_path}]", f"hydra.run.dir={tmp_path / 'out'}",
                      tmp=tmp_path, check=False, env={"HYDRA_FULL_ERROR": "0"})
    assert proc.returncode == 1 and not marker.exists()
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("predict.py: error:")]
    assert len(err) == 1 and "flat.skops: refused: holds builtins.exec" in err[0] and "Traceback" not in proc.stderr
