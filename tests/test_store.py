"""The embedding store: round trip, float16, ordered selection, missing ids, atomic rewrite."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.embedding.store import EmbeddingStore

IDS = ["a", "b", "c", "d"]
EMB = np.array([[0.0, 1.0, 2.0], [10.0, 11.0, 12.0], [20.0, 21.0, 22.0], [30.5, 31.25, -32.0]], dtype=np.float32)


def test_write_open_round_trip(tmp_path):
    path = tmp_path / "stores" / "ge2e-abc"
    written = EmbeddingStore.write(path, IDS, EMB, {"key": {"x": 1}})
    opened = EmbeddingStore.open(path)
    assert opened.ids == IDS and written.ids == IDS
    assert opened.embeddings.dtype == np.float32 and opened.embeddings.shape == (4, 3)
    np.testing.assert_array_equal(np.asarray(opened.embeddings), EMB)
    assert isinstance(opened.embeddings, np.memmap)
    assert opened.meta["key"] == {"x": 1} and opened.meta["n"] == 4 and opened.meta["dtype"] == "float32"
    assert (path / "ids.txt").read_text() == "a\nb\nc\nd\n"
    # nothing temporary left next to the store
    assert sorted(p.name for p in path.parent.iterdir()) == ["ge2e-abc"]


def test_float16_option(tmp_path):
    emb = np.array([[1 / 3, 1000.1], [-2.5, 65000.0]], dtype=np.float32)
    store = EmbeddingStore.write(tmp_path / "s", ["x", "y"], emb, {}, dtype="float16")
    assert store.embeddings.dtype == np.float16 and store.meta["dtype"] == "float16"
    sel = store.select(["x", "y"])
    assert sel.dtype == np.float32
    # float16 has 11 significant bits: 1/3 -> 0.333251953125 (5461 * 2**-14), 1000.1 -> 1000.0
    # (step 0.5), 65000 -> 64992 (step 32 above 2**15)
    np.testing.assert_array_equal(sel, [[0.333251953125, 1000.0], [-2.5, 64992.0]])


def test_select_follows_requested_order(tmp_path):
    store = EmbeddingStore.write(tmp_path / "s", IDS, EMB, {})
    np.testing.assert_array_equal(store.select(["d", "a", "c"]), EMB[[3, 0, 2]])
    np.testing.assert_array_equal(store.select(["b", "b"]), EMB[[1, 1]])
    assert store.select([]).shape == (0, 3)
    np.testing.assert_array_equal(store.rows(["c", "a"]), [2, 0])


def test_missing_ids_keyerror_lists_them(tmp_path):
    store = EmbeddingStore.write(tmp_path / "s", IDS, EMB, {})
    with pytest.raises(KeyError) as ei:
        store.select(["a", "zz", "yy"])
    msg = str(ei.value)
    assert "2 id(s)" in msg and "zz" in msg and "yy" in msg


def test_write_validates_inputs(tmp_path):
    with pytest.raises(ValueError, match="3 ids for 4"):
        EmbeddingStore.write(tmp_path / "s", IDS[:3], EMB, {})
    with pytest.raises(ValueError, match="duplicate"):
        EmbeddingStore.write(tmp_path / "s", ["a", "a", "b", "c"], EMB, {})
    assert not (tmp_path / "s").exists()


def test_rewrite_replaces_atomically(tmp_path):
    path = tmp_path / "s"
    EmbeddingStore.write(path, IDS, EMB, {"version": 1})
    new = EmbeddingStore.write(path, ["z", "y"], np.ones((2, 5), np.float32), {"version": 2})
    assert new.ids == ["z", "y"] and new.embeddings.shape == (2, 5)
    reopened = EmbeddingStore.open(path)
    assert reopened.ids == ["z", "y"] and reopened.meta["version"] == 2
    np.testing.assert_array_equal(np.asarray(reopened.embeddings), np.ones((2, 5)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no .old / temp dirs left


def test_failed_rewrite_keeps_old_store(tmp_path):
    path = tmp_path / "s"
    EmbeddingStore.write(path, IDS, EMB, {"version": 1})
    with pytest.raises(Exception):
        # object arrays cannot be cast to float32: fails while writing the temp dir
        EmbeddingStore.write(path, ["p", "q"], np.array([[object()], [object()]]), {"version": 2})
    kept = EmbeddingStore.open(path)
    assert kept.ids == IDS and kept.meta["version"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_open_incomplete_store(tmp_path):
    path = tmp_path / "s"
    EmbeddingStore.write(path, IDS, EMB, {})
    (path / "ids.txt").unlink()
    with pytest.raises(DataError) as ei:
        EmbeddingStore.open(path)
    assert ei.value.path == str(path / "ids.txt")


def test_open_row_id_mismatch(tmp_path):
    path = tmp_path / "s"
    EmbeddingStore.write(path, IDS, EMB, {})
    (path / "ids.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match="4 rows but 2 ids"):
        EmbeddingStore.open(path)


def test_meta_is_json(tmp_path):
    path = tmp_path / "s"
    EmbeddingStore.write(path, IDS, EMB, {"note": "x"})
    meta = json.loads((path / "meta.json").read_text())
    assert meta == {"note": "x", "n": 4, "dtype": "float32"}
