"""Layer-selectable stores: a sweep over an SSL model's layers reads one ``layer=all`` store.

An encoder that offers ``layer_columns()`` and ``all_layers()`` (``encoder=ssl``) writes with
``layer=all`` one row per utterance holding every layer's pooled block. A later job with
``layer=k`` looks for that store first: when it holds every utterance the job asks for, the job
reads layer k's columns from it (:class:`LayerView`) and extracts nothing; otherwise it extracts
(or reuses) its own ``layer=k`` store as any encoder does. Column slices equal a ``layer=k``
extraction because pooling is per layer and the mean over windows commutes with the slice;
re-normalised window means do not, so ``windowing.renormalize=true`` never reads the view.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.embedding.encoders.base import SpeakerEncoder
from deeptalk_ser.embedding.extraction import extract_or_reuse
from deeptalk_ser.embedding.store import (EmbeddingStore, open_store, plan_request, request_summary, store_key,
                                          store_path)
from deeptalk_ser.embedding.windowing import Windowing
from deeptalk_ser.utils.errors import AudioError
from deeptalk_ser.utils.io import write_json_atomic


@dataclass
class LayerView:
    """One layer's columns of a ``layer=all`` store, read-only, with the store's interface the
    tasks use (``ids``, ``index``, ``select``, ``meta``, ``path``, ``embeddings``)."""

    store: EmbeddingStore
    columns: slice
    layer: int

    @property
    def ids(self) -> list[str]:
        return self.store.ids

    @property
    def path(self) -> Path:
        return self.store.path

    @property
    def embeddings(self) -> np.ndarray:
        return self.store.embeddings[:, self.columns]

    @property
    def meta(self) -> dict[str, Any]:
        key = dict(self.store.meta.get("key") or {})
        if isinstance(key.get("encoder"), dict):
            key["encoder"] = {**key["encoder"], "layer": self.layer}
        return {**self.store.meta, "key": key, "read_from_layer_store": str(self.store.path)}

    def index(self) -> dict[str, int]:
        return self.store.index()

    def select(self, ids: Sequence[str]) -> np.ndarray:
        return np.ascontiguousarray(self.store.select(ids)[:, self.columns])


def layer_store_for(utts: Sequence[Utterance], encoder: SpeakerEncoder, windowing: Windowing, store_root: Path,
                    dtype: str, on_error: str) -> tuple[LayerView, dict[str, Any]] | None:
    """The view of the ``layer=all`` store of this encoder when it answers every one of ``utts``."""
    columns = getattr(encoder, "layer_columns", lambda: None)()
    if columns is None or (windowing.window_s is not None and windowing.renormalize):
        return None
    full = encoder.all_layers()  # type: ignore[attr-defined]
    key = store_key(full, windowing, dtype)
    base = open_store(store_path(store_root, full.name, key), key)
    if base is None:
        return None
    request = plan_request(base, utts)
    if request.todo:
        return None
    if on_error == "raise" and request.reused_errors:
        uid, rec = request.reused_errors[0]
        raise AudioError(rec.get("path") or uid, rec.get("message") or "unreadable")
    summary = {**request_summary(base, utts, request), "layer": encoder.layer,  # type: ignore[attr-defined]
               "read_from_layer_store": str(base.path)}
    return LayerView(base, columns, int(encoder.layer)), summary  # type: ignore[attr-defined]


def extract_or_reuse_layer(utts: Sequence[Utterance], encoder: SpeakerEncoder, windowing: Windowing,
                           store_root: str | Path, on_error: str = "raise", dtype: str = "float32",
                           summary_path: str | Path | None = None, **kwargs: Any
                           ) -> tuple[EmbeddingStore | LayerView | None, dict[str, Any]]:
    """:func:`extract_or_reuse`, but a ``layer=k`` job is answered by a complete ``layer=all``
    store when there is one (nothing extracted, nothing written but the summary)."""
    found = layer_store_for(list(utts), encoder, windowing, Path(store_root), dtype, on_error)
    if found is None:
        return extract_or_reuse(utts, encoder, windowing, store_root, on_error=on_error, dtype=dtype,
                                summary_path=summary_path, **kwargs)
    if summary_path:
        write_json_atomic(summary_path, found[1])
    return found
