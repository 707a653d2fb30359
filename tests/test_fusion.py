"""encoder=fusion: the parts' stores side by side, each block scaled on the training fold only
(BlockScaler inside the head), fused heads saved, loaded and applied; the job end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from deeptalk_ser.embedding.fusion import FusedEmbeddings, fuse
from deeptalk_ser.embedding.store import EmbeddingStore
from deeptalk_ser.evaluation.classifiers.fusion import BlockScaler, check_fusable, with_blocks
from deeptalk_ser.evaluation.classifiers.hierarchical import sad_first
from deeptalk_ser.evaluation.classifiers.svm import SVMClassifier
from deeptalk_ser.evaluation.heads import load_head, save_head
from deeptalk_ser.utils.errors import ConfigError, DataError


def test_each_block_gets_unit_total_variance_on_the_rows_it_is_fitted_on():
    rng = np.random.default_rng(0)
    wide = rng.standard_normal((200, 88)) * 1000 + 5  # eGeMAPS-like scales
    narrow = rng.standard_normal((200, 4)) * 0.01
    const = np.ones((200, 3))
    z = BlockScaler([88, 4, 3]).fit_transform(np.concatenate([wide, narrow, const], axis=1))
    assert z.dtype == np.float32
    assert z[:, :88].var(axis=0).sum() == pytest.approx(1.0, rel=1e-4)
    assert z[:, 88:92].var(axis=0).sum() == pytest.approx(1.0, rel=1e-4)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    assert np.all(z[:, 92:] == 0)  # constant on the training rows: 0, also for new rows
    with pytest.raises(ValueError, match="do not tile"):
        BlockScaler([88, 5]).fit(np.zeros((3, 92)))


def test_the_block_scaler_is_fitted_on_the_training_fold_only():
    """A test fold far off the training rows (a huge offset, another scale) leaves the fitted
    scaling and the head's decisions on the training rows exactly as they were: no test
    statistic reaches the head (the old fused store z-scored over the whole corpus)."""
    rng = np.random.default_rng(1)
    y = np.array(["a", "b"] * 30, dtype=object)
    train = np.concatenate([rng.standard_normal((60, 3)) + (y == "a")[:, None], rng.standard_normal((60, 5)) * 50],
                           axis=1).astype(np.float32)
    test = rng.standard_normal((20, 8)).astype(np.float32)
    clf = SVMClassifier(backend="sklearn", blocks=[3, 5]).fit(train, y)
    fuse_step = clf.model_.named_steps["fuse"]
    np.testing.assert_allclose(fuse_step.mean_, train.astype(np.float64).mean(axis=0))
    before = clf.model_.decision_function(train)
    shifted = test + 1e6
    clf.predict(shifted)  # transforming a far-off test fold changes nothing fitted
    np.testing.assert_allclose(fuse_step.mean_, train.astype(np.float64).mean(axis=0))
    np.testing.assert_array_equal(clf.model_.decision_function(train), before)
    # the same head fitted on the training rows beside another test fold: identical
    other = SVMClassifier(backend="sklearn", blocks=[3, 5]).fit(train, y)
    np.testing.assert_array_equal(other.model_.decision_function(train), before)
    # what the old corpus-wide standardisation did instead: the test fold moved the training transform
    both = np.concatenate([train, shifted]).astype(np.float64)
    assert not np.allclose(both.mean(axis=0), fuse_step.mean_)


def test_fusion_reaches_every_stage_and_refuses_heads_without_blocks():
    make = with_blocks(lambda: sad_first(backend="sklearn"), [3, 5])
    clf = make()
    assert clf.get_params(deep=True)["first_stage__blocks"] == [3, 5]
    assert make().first_stage is not clf.first_stage

    class NoBlocks:
        def get_params(self, deep=True):
            return {"C": 1.0}

    with pytest.raises(ConfigError, match="no blocks parameter"):
        check_fusable(NoBlocks())


def _store(tmp: Path, name: str, ids, x) -> EmbeddingStore:
    return EmbeddingStore.write(tmp / name, ids, np.asarray(x, np.float32), {"key": {"part": name}})


def test_fused_view_aligns_ids_and_keeps_the_raw_rows(tmp_path):
    a = _store(tmp_path, "a", ["u1", "u2", "u3", "other"], [[1, 0], [2, 0], [3, 1], [9, 9]])
    b = _store(tmp_path, "b", ["u3", "u1"], [[10, 1, 1], [20, 2, 2]])  # u2 missing in b (e.g. too short)
    fused, summary = fuse([("a", a), ("b", b)], ["u1", "u2", "u3"])
    assert isinstance(fused, FusedEmbeddings) and fused.ids == ["u1", "u3"] and fused.blocks == [2, 3]
    assert summary["n_dropped_by_a_part"] == 1 and summary["fusion_parts"] == {"a": 2, "b": 3}
    np.testing.assert_array_equal(fused.select(["u3", "u1"]), [[3, 1, 10, 1, 1], [1, 0, 20, 2, 2]])  # raw: no scaling
    assert fused.index() == {"u1": 0, "u3": 1} and fused.meta["key"]["fusion"][0] == {"name": "a", "key": {"part": "a"}}
    assert not list(tmp_path.glob("fusion*"))  # no fused store
    with pytest.raises(ConfigError, match="encoder.parts"):
        fuse([("a", a)], ["u1"])


def test_cosine_tasks_scale_fused_blocks_over_the_scored_utterances(tmp_path):
    """A task that trains nothing (verification, emotion verification, emotion shift) has no
    training fold: the fused blocks are scaled over the utterances it scores; one encoder's rows
    are used as they are."""
    from deeptalk_ser.runs.common import scored_features

    rng = np.random.default_rng(3)
    ids = [f"u{i}" for i in range(20)]
    a = _store(tmp_path, "a", ids, rng.standard_normal((20, 2)))
    b = _store(tmp_path, "b", ids, rng.standard_normal((20, 4)) * 1000 + 7)
    fused, _ = fuse([("a", a), ("b", b)], ids)
    x = scored_features(fused, ids[:10])
    np.testing.assert_allclose(x, BlockScaler([2, 4]).fit_transform(fused.select(ids[:10])))
    assert x[:, 2:].var(axis=0).sum() == pytest.approx(1.0, rel=1e-4)
    np.testing.assert_array_equal(scored_features(a, ids[:3]), a.select(ids[:3]))


def _fusion_encoder_config() -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from markers import PROJECT_ROOT

    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base=None):
        cfg = compose("evaluate", overrides=["encoder=fusion", "device=cpu"])
    return OmegaConf.to_container(cfg.encoder, resolve=True)  # type: ignore[return-value]


@pytest.mark.parametrize("make", [lambda: SVMClassifier(backend="sklearn", blocks=[3, 5]),
                                  lambda: with_blocks(lambda: sad_first(backend="sklearn"), [3, 5])()])
def test_a_fused_head_is_saved_loaded_and_predicts_bit_for_bit(tmp_path, make):
    rng = np.random.default_rng(2)
    y = np.array(["angry", "sad", "happy", "neutral"] * 20, dtype=object)
    X = np.concatenate([rng.standard_normal((80, 3)) + (y == "sad")[:, None],
                        rng.standard_normal((80, 5)) * 100 + 40 * (y == "angry")[:, None]], axis=1).astype(np.float32)
    clf = make().fit(X, y)
    save_head(clf, tmp_path / "model", {"task": "er", "encoder": _fusion_encoder_config()})
    info = json.loads((tmp_path / "model" / "head.json").read_text())
    assert info["encoder_option"] == "fusion"
    assert {k: p["option"] for k, p in info["encoder"]["parts"].items()} == {"speaker": "ge2e", "features": "egemaps"}
    assert "_target_" not in json.dumps(info["encoder"])
    loaded, record = load_head(tmp_path / "model")
    assert (loaded.predict(X) == clf.predict(X)).all()
    parts = record["encoder"]["parts"]
    assert parts["speaker"]["_target_"].endswith("GE2EEncoder") and parts["features"]["_target_"].endswith("EGeMAPSEncoder")
    # a crafted fused record is refused like any other
    for change, message in [(lambda e: e["parts"]["speaker"].update(option="fusion"), "not fusion"),
                            (lambda e: e["parts"]["speaker"]["config"].update(_target_="os.system"), "_target_"),
                            (lambda e: e.update(extra=1), "only name: fusion and parts"),
                            (lambda e: e["parts"].pop("features"), "two or more")]:
        bad = json.loads(json.dumps(info))
        change(bad["encoder"])
        (tmp_path / "model" / "head.json").write_text(json.dumps(bad))
        with pytest.raises(DataError, match=message):
            load_head(tmp_path / "model")


@pytest.mark.e2e
def test_fusion_job_reuses_the_parts_stores_and_saves_a_head_predict_applies(tmp_path):
    from e2e_utils import read_json, run_script, speech_emodb_tree

    corpus = speech_emodb_tree(tmp_path / "emodb", speakers=("03", "08", "09"), texts=("a01", "a02"))
    run = tmp_path / "run"
    run_script("evaluate.py", "encoder=fusion", f"data.root={corpus}", "logger=none", "save_model=true",
               f"hydra.run.dir={run}", tmp=tmp_path)
    res = read_json(run / "results.json")
    assert res["encoder"] == "fusion(ge2e+egemaps)" and res["extraction"]["fusion_parts"] == {"ge2e": 256, "egemaps": 88}
    assert 0 <= res["ua"] <= 1 and res["n_utterances"] == 3 * 2 * 4
    stores = sorted(p.name.split("-")[0] for p in (tmp_path / "cache" / "embeddings" / "emodb").iterdir()
                    if not p.name.startswith("."))
    assert stores == ["egemaps", "ge2e"]  # the parts' own stores, no fused store
    # a single-encoder job reads the part's store: nothing extracted again
    again = tmp_path / "again"
    run_script("evaluate.py", "experiment=egemaps_baseline", "task=ed", f"data.root={corpus}", "logger=none",
               f"hydra.run.dir={again}", tmp=tmp_path)
    assert read_json(again / "extract_summary.json")["n_embedded"] == 0
    # the fused head predicts new audio: every part embeds it, the head's own block scaler does the rest
    out = tmp_path / "pred"
    proc = run_script("predict.py", f"model={run / 'model'}", f"inputs=[{corpus / 'wav'}]", f"hydra.run.dir={out}",
                      tmp=tmp_path)
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 3 * 2 * 5 and all(r["label"] in {"angry", "sad", "happy", "neutral"} for r in rows)
    assert "0 skipped" in proc.stdout.strip().splitlines()[-1]
