"""Fusion of encoders: each part's own store, read side by side; no fused store.

``encoder=fusion`` lists its parts (any encoder configs, e.g. GE2E + eGeMAPS). Each part is
extracted (or reused) as its own per-corpus store, exactly as ``encoder=<part>`` would; the
fused features of an utterance are the concatenation of its raw part embeddings, for the
utterances every part embedded. Nothing is standardised here: each block is scaled inside the
classifier, on the training fold only (``evaluation/classifiers/fusion.py``: ``BlockScaler``),
so no statistic of a test fold reaches the head and a fused head can be saved and applied to
new audio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from deeptalk_ser.embedding.store import EmbeddingStore
from deeptalk_ser.embedding.windowing import describe_windowing
from deeptalk_ser.utils.errors import ConfigError


@dataclass
class FusedEmbeddings:
    """The parts' stores ((name, store) pairs) as one read-only store of concatenated rows over
    ``ids`` (what :class:`EmbeddingStore` offers the tasks: ``ids``, ``index``, ``select``,
    ``meta``, ``path``) plus ``blocks``, the width of each part's block."""

    parts: list[tuple[str, EmbeddingStore]]
    ids: list[str]
    _index: dict[str, int] | None = field(default=None, init=False, repr=False)

    @property
    def blocks(self) -> list[int]:
        return [int(s.embeddings.shape[1]) for _, s in self.parts]

    @property
    def path(self) -> Path:
        """The folder holding the parts' stores (the corpus's store folder)."""
        return self.parts[0][1].path.parent

    @property
    def meta(self) -> dict[str, Any]:
        windowing = "+".join(f"{n}:{describe_windowing(s.meta.get('key', {}).get('windowing'))}" for n, s in self.parts)
        return {"key": {"fusion": [{"name": n, "key": s.meta.get("key")} for n, s in self.parts],
                        "windowing": windowing}}

    def index(self) -> dict[str, int]:
        if self._index is None:
            self._index = dict(zip(self.ids, range(len(self.ids))))
        return self._index

    def select(self, ids: Sequence[str]) -> np.ndarray:
        """float32 raw concatenated blocks of ``ids``, in that order."""
        return np.concatenate([s.select(ids) for _, s in self.parts], axis=1)


def fuse(parts: Sequence[tuple[str, EmbeddingStore]], ids: Sequence[str]) -> tuple[FusedEmbeddings, dict[str, Any]]:
    """The fused view of ``parts`` over those of ``ids`` every part embedded, and what it left out."""
    if len(parts) < 2:
        raise ConfigError("encoder.parts", f"fusion needs at least 2 parts, got {len(parts)}")
    names = [n for n, _ in parts]
    if len(set(names)) != len(names):
        raise ConfigError("encoder.parts", f"part names repeat: {names}")
    indexes = [s.index() for _, s in parts]
    keep = [i for i in ids if all(i in idx for idx in indexes)]
    kept = set(keep)
    lost = [i for i in ids if i not in kept]
    fused = FusedEmbeddings(list(parts), keep)
    summary = {"utterances_in": len(ids), "embedded": len(keep), "fusion_parts": dict(zip(names, fused.blocks)),
               "dropped_by_a_part": lost[:50], "n_dropped_by_a_part": len(lost)}
    return fused, summary
