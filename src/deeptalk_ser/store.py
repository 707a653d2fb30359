"""The embedding store: one float array (rows aligned with an id index) plus its provenance.

Layout of a store directory: ``embeddings.npy`` (n x dim, float32 or float16, memory-mapped
on open), ``ids.txt`` (one utterance id per row), ``meta.json`` (the cache key: manifest hash,
encoder config, windowing; plus dropped utterances with reasons). The directory is written
under a temporary name and renamed, so a store either exists complete or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import DataError


@dataclass
class EmbeddingStore:
    path: Path
    ids: list[str]
    embeddings: np.ndarray  # memory-mapped when opened from disk
    meta: dict[str, Any]

    @classmethod
    def write(cls, path: str | Path, ids: Sequence[str], embeddings: np.ndarray, meta: dict[str, Any],
              dtype: str = "float32") -> "EmbeddingStore":
        path = Path(path)
        if len(ids) != len(embeddings):
            raise ValueError(f"{len(ids)} ids for {len(embeddings)} embedding rows")
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate ids in embedding store")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            np.save(tmp / "embeddings.npy", np.asarray(embeddings, dtype=dtype))
            (tmp / "ids.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
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
        return {i: r for r, i in enumerate(self.ids)}

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        """Row numbers of ``ids``; a clear error listing (some of) the missing ones."""
        idx = self.index()
        rows = np.fromiter((idx.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        if (rows < 0).any():
            missing = [i for i, r in zip(ids, rows) if r < 0]
            raise KeyError(f"{len(missing)} id(s) not in store {self.path}: {missing[:5]}")
        return rows

    def select(self, ids: Sequence[str]) -> np.ndarray:
        """float32 embeddings of ``ids`` in that order (one fancy-index read, no per-id loop)."""
        return np.asarray(self.embeddings[self.rows(ids)], dtype=np.float32)
