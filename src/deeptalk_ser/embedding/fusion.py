"""Fusion of encoders: concatenated embeddings, each block standardised and weighted equally.

``encoder=fusion`` lists its parts (any encoder configs, e.g. GE2E + eGeMAPS). Each part is
extracted (or reused) as its own store; the fused store holds, for the utterances every part
embedded, the concatenation of the blocks after per-block standardisation: every feature
z-scored over the corpus (label-free statistics of all its utterances, as a fixed feature
transform), then each block divided by the square root of its width, so every block carries the
same total variance (1) whatever its dimension: 88 eGeMAPS features do not drown in, or drown,
256 GE2E dimensions, and the paper's fixed RBF SVM (gamma=0.1, no scaling) sees distances on
the scale of unit-norm embeddings. The fused store is keyed by the parts' store keys and is
reused like any store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from deeptalk_ser.embedding.windowing import describe_windowing
from deeptalk_ser.embedding.store import EmbeddingStore, open_matching_store, store_path
from deeptalk_ser.utils.errors import ConfigError

#: the fused store's transform, part of its key
BLOCK_TRANSFORM = "zscore-per-feature / sqrt(block width)"


def standardise_block(x: np.ndarray) -> np.ndarray:
    """Z-score each column (a constant column becomes 0), then scale to unit total variance."""
    x = np.asarray(x, dtype=np.float64)
    std = x.std(axis=0)
    z = np.divide(x - x.mean(axis=0), std, out=np.zeros_like(x), where=std > 0)
    return (z / np.sqrt(x.shape[1])).astype(np.float32)


def fuse_or_reuse(parts: Sequence[tuple[str, EmbeddingStore]], ids: Sequence[str], root: str | Path
                  ) -> tuple[EmbeddingStore, dict[str, Any]]:
    """The fused store of ``parts`` ((name, store) pairs) over those of ``ids`` every part embedded."""
    if len(parts) < 2:
        raise ConfigError("encoder.parts", f"fusion needs at least 2 parts, got {len(parts)}")
    names = [n for n, _ in parts]
    if len(set(names)) != len(names):
        raise ConfigError("encoder.parts", f"part names repeat: {names}")
    common = set.intersection(*(set(s.ids) for _, s in parts))
    keep = [i for i in ids if i in common]
    windowing = "+".join(f"{n}:{describe_windowing(s.meta.get('key', {}).get('windowing'))}" for n, s in parts)
    key = {"fusion": [{"name": n, "key": s.meta.get("key")} for n, s in parts], "transform": BLOCK_TRANSFORM,
           "windowing": windowing,
           "n_utterances": len(keep), "ids_hash": _ids_hash(keep)}
    path = store_path(root, "fusion-" + "+".join(names), key)
    found = open_matching_store(path, key)
    if found:
        return found
    blocks = [standardise_block(s.select(keep)) for _, s in parts]
    widths = {n: int(b.shape[1]) for n, b in zip(names, blocks)}
    summary = {"utterances_in": len(ids), "embedded": len(keep), "fusion_parts": widths,
               "dropped_by_a_part": sorted(set(ids) - common)[:50], "n_dropped_by_a_part": len(set(ids) - common),
               "n_dropped_short": 0, "n_skipped_errors": 0}
    store = EmbeddingStore.write(path, keep, np.concatenate(blocks, axis=1), {"key": key, "summary": summary})
    return store, summary


def _ids_hash(ids: Sequence[str]) -> str:
    from deeptalk_ser.utils.io import stable_hash

    return stable_hash(list(ids), 32)
