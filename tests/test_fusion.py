"""encoder=fusion: per-block standardisation, the fused store and its reuse, the job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deeptalk_ser.embedding.fusion import fuse_or_reuse, standardise_block
from deeptalk_ser.embedding.store import EmbeddingStore
from deeptalk_ser.utils.errors import ConfigError


def test_each_block_gets_unit_total_variance():
    rng = np.random.default_rng(0)
    wide = rng.standard_normal((200, 88)) * 1000 + 5  # eGeMAPS-like scales
    narrow = rng.standard_normal((200, 4)) * 0.01
    for x in (wide, narrow):
        z = standardise_block(x)
        assert z.var(axis=0).sum() == pytest.approx(1.0, rel=1e-4)
        np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-6)
    const = standardise_block(np.ones((5, 3)))
    assert np.all(const == 0)


def _store(tmp: Path, name: str, ids, x) -> EmbeddingStore:
    return EmbeddingStore.write(tmp / name, ids, np.asarray(x, np.float32), {"key": {"part": name}})


def test_fused_store_aligns_ids_and_is_reused(tmp_path):
    a = _store(tmp_path, "a", ["u1", "u2", "u3"], [[1, 0], [2, 0], [3, 1]])
    b = _store(tmp_path, "b", ["u3", "u1"], [[10, 1, 1], [20, 2, 2]])  # u2 missing in b (e.g. too short)
    store, summary = fuse_or_reuse([("a", a), ("b", b)], ["u1", "u2", "u3"], tmp_path / "fused")
    assert store.ids == ["u1", "u3"] and store.embeddings.shape == (2, 5)
    assert summary["n_dropped_by_a_part"] == 1 and summary["fusion_parts"] == {"a": 2, "b": 3}
    np.testing.assert_allclose(store.select(["u1", "u3"])[:, :2], standardise_block(np.array([[1, 0], [3, 1]])))
    again, summary2 = fuse_or_reuse([("a", a), ("b", b)], ["u1", "u2", "u3"], tmp_path / "fused")
    assert again.path == store.path and "reused_store" in summary2
    with pytest.raises(ConfigError, match="encoder.parts"):
        fuse_or_reuse([("a", a)], ["u1"], tmp_path / "fused")


@pytest.mark.e2e
def test_fusion_job_on_a_generated_emodb_tree(tmp_path):
    from e2e_utils import read_json, run_script, speech_emodb_tree

    corpus = speech_emodb_tree(tmp_path / "emodb", speakers=("03", "08", "09"), texts=("a01", "a02"))
    run = tmp_path / "run"
    run_script("evaluate.py", "encoder=fusion", f"data.root={corpus}", "logger=none", f"hydra.run.dir={run}", tmp=tmp_path)
    res = read_json(run / "results.json")
    assert res["encoder"] == "fusion(ge2e+egemaps)" and res["extraction"]["fusion_parts"] == {"ge2e": 256, "egemaps": 88}
    assert 0 <= res["ua"] <= 1 and res["n_utterances"] == 3 * 2 * 4
    stores = sorted(p.name.split("-")[0] for p in (tmp_path / "cache" / "embeddings" / "emodb").iterdir()
                    if not p.name.startswith("."))
    assert stores == ["egemaps", "fusion", "ge2e"]
