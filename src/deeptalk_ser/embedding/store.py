"""The embedding store: one float array (rows aligned with an id index) plus its provenance.

Layout of a store directory: ``embeddings.npy`` (n x dim, float32 or float16, memory-mapped
on open), ``ids.txt`` (one utterance id per row), ``meta.json`` (the cache key: manifest hash,
encoder config, windowing; plus dropped utterances with reasons). The directory is written
under a temporary name and renamed, so a store either exists complete or not at all.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.utils.io import make_temp_dir, stable_hash

log = logging.getLogger(__name__)


@dataclass
class EmbeddingStore:
    path: Path
    ids: list[str]
    embeddings: np.ndarray  # memory-mapped when opened from disk
    meta: dict[str, Any]
    _index: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def write(cls, path: str | Path, ids: Sequence[str], embeddings: np.ndarray, meta: dict[str, Any],
              dtype: str = "float32") -> "EmbeddingStore":
        if len(ids) != len(embeddings):
            raise ValueError(f"{len(ids)} ids for {len(embeddings)} embedding rows")
        embeddings = np.asarray(embeddings)
        dim = embeddings.shape[1] if embeddings.ndim == 2 else 0
        step = 1 << 16  # rows per conversion to ``dtype``: bounded extra memory
        chunks = (embeddings[i:i + step] for i in range(0, len(embeddings), step))
        return cls.write_chunks(path, ids, chunks, dim, meta, dtype=dtype)

    @classmethod
    def write_chunks(cls, path: str | Path, ids: Sequence[str], chunks: Iterable[np.ndarray], dim: int,
                     meta: dict[str, Any], dtype: str = "float32") -> "EmbeddingStore":
        """Write a store whose rows arrive in consecutive chunks (e.g. merged from shards).

        ``embeddings.npy`` (the same bytes ``np.save`` writes) is written sequentially, chunk by
        chunk, each converted to ``dtype``: peak memory is one chunk, not the whole array. The
        chunks' rows must add up to ``len(ids)``.
        """
        path = Path(path)
        ids = list(ids)
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate ids in embedding store")
        if any("\n" in i or "\r" in i for i in ids):
            raise ValueError("embedding store ids must not contain line breaks")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(path.parent, prefix=f".{path.name}.")
        try:
            header = np.lib.format.header_data_from_array_1_0(np.empty((0, dim), dtype=np.dtype(dtype)))
            header["shape"] = (len(ids), dim)
            row = 0
            with open(tmp / "embeddings.npy", "wb") as f:
                np.lib.format.write_array_header_1_0(f, header)
                for chunk in chunks:
                    chunk = np.asarray(chunk)
                    if len(chunk) == 0:
                        continue
                    if chunk.ndim != 2 or chunk.shape[1] != dim:
                        raise ValueError(f"chunk of shape {chunk.shape} does not fit a store of dim {dim}")
                    if row + len(chunk) > len(ids):
                        raise ValueError(f"more embedding rows than the {len(ids)} ids")
                    f.write(np.ascontiguousarray(chunk, dtype=dtype).data)
                    row += len(chunk)
            if row != len(ids):
                raise ValueError(f"{len(ids)} ids for {row} embedding rows")
            (tmp / "ids.txt").write_text(("\n".join(ids) + "\n") if ids else "", encoding="utf-8")
            (tmp / "meta.json").write_text(json.dumps({**meta, "n": len(ids), "dtype": dtype}, indent=2, default=str))
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cls.open(path)

    @classmethod
    def open(cls, path: str | Path) -> "EmbeddingStore":
        path = Path(path)
        for name in ("embeddings.npy", "ids.txt", "meta.json"):
            if not (path / name).is_file():
                raise DataError(path / name, "embedding store is incomplete")
        emb = np.load(path / "embeddings.npy", mmap_mode="r")
        ids = (path / "ids.txt").read_text(encoding="utf-8").splitlines()
        if len(ids) != emb.shape[0]:
            raise DataError(path, f"store has {emb.shape[0]} rows but {len(ids)} ids")
        return cls(path, ids, emb, json.loads((path / "meta.json").read_text()))

    def index(self) -> dict[str, int]:
        """id -> row, built once per store (C-level ``dict(zip(...))``, about 0.1 s per million ids)."""
        if self._index is None:
            self._index = dict(zip(self.ids, range(len(self.ids))))
        return self._index

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        """Row numbers of ``ids``; a clear error listing (some of) the missing ones.

        One dict lookup per id (``map(dict.get, ...)``), no other per-id Python work."""
        idx = self.index()
        rows = np.array(list(map(idx.get, ids, itertools.repeat(-1, len(ids)))), dtype=np.int64).reshape(-1)
        if (rows < 0).any():
            missing = [ids[r] for r in np.flatnonzero(rows < 0)[:5]]
            raise KeyError(f"{int((rows < 0).sum())} id(s) not in store {self.path}: {missing}")
        return rows

    def select(self, ids: Sequence[str]) -> np.ndarray:
        """float32 embeddings of ``ids`` in that order (one fancy-index read, no per-id loop).

        Rows are read in ascending order (sequential on the memory map) and put back in the
        requested order."""
        rows = self.rows(ids)
        if len(rows) == 0:
            return np.zeros((0, self.embeddings.shape[1]), np.float32)
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), self.embeddings.shape[1]), np.float32)
        out[order] = self.embeddings[rows[order]]
        return out


# ----------------------------------------------------------------------------- reuse


def store_key(utts: Sequence[Utterance], encoder: Any, windowing: Any, on_error: str,
              dtype: str = "float32") -> dict[str, Any]:
    """Everything that determines a store's content; a store is reused only if this matches.
    The manifest part hashes the utterances to embed (ids, paths, header facts and each file's
    content checksum from prepare, so a file replaced by another is noticed even when its size
    and mtime were kept; utterances without a checksum fall back to the file's stat), so a subset
    of a manifest gets its own store."""
    listing = [[u.id, u.path, u.duration, u.sample_rate, u.fingerprint()] for u in utts]
    return {"manifest_hash": stable_hash(listing, 32), "n_utterances": len(utts), "encoder": encoder.config(),
            "windowing": windowing.describe(), "on_error": on_error, "dtype": dtype}


def open_matching_store(path: Path, key: dict[str, Any]) -> tuple[EmbeddingStore, dict[str, Any]] | None:
    """The store at ``path`` and its summary if it was made with exactly ``key``, else None."""
    if not (path / "meta.json").is_file():
        return None
    store = EmbeddingStore.open(path)
    if store.meta.get("key") != json.loads(json.dumps(key, default=str)):  # as stored (JSON: str keys)
        return None
    log.info("reusing embedding store %s", path)
    return store, {**store.meta["summary"], "reused_store": str(path)}


def store_path(root: str | Path, encoder_name: str, key: dict[str, Any]) -> Path:
    """Where the store of ``key`` lives under ``root``: one folder per key, named by its hash."""
    return Path(root) / f"{encoder_name}-{stable_hash(key)}"
