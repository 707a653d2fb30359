"""Stages shared by the entry points: prepare a corpus manifest, build an encoder from its
config, and get (or reuse) the embedding store for a manifest."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from deeptalk_ser.data.corpora.base import CorpusLoader
from deeptalk_ser.embedding.encoders.base import SpeakerEncoder
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.data.prepare import PrepareReport, load_prepared
from deeptalk_ser.embedding.store import EmbeddingStore
from deeptalk_ser.embedding.windowing import Windowing

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    loader: CorpusLoader
    utts: list[Utterance]
    report: PrepareReport


def prepare_data(cfg: DictConfig) -> PreparedData:
    """Instantiate ``cfg.data.loader`` and prepare (or reuse) its manifest in the cache."""
    loader: CorpusLoader = instantiate(cfg.data.loader)
    out_dir = Path(cfg.paths.cache_dir) / "manifests" / cfg.data.name
    utts, report = load_prepared(loader, out_dir, on_error=cfg.data.get("on_error", "raise"))
    log.info("manifest %s: %d utterances%s", report.manifest, report.n_utterances, " (reused)" if report.reused else "")
    return PreparedData(loader, utts, report)


def build_encoder(enc_cfg: DictConfig) -> tuple[SpeakerEncoder, Windowing]:
    """The encoder object and the windowing, which the config keeps side by side."""
    params = OmegaConf.to_container(enc_cfg, resolve=True)
    assert isinstance(params, dict)
    win = params.pop("windowing", None) or {}
    encoder = instantiate(params, _convert_="all")
    return encoder, Windowing(**win)


def get_embeddings(cfg: DictConfig, data: PreparedData, summary_path: str | Path | None = None,
                   utts: list[Utterance] | None = None,
                   distributed: bool = False) -> tuple[EmbeddingStore | None, dict[str, Any], str]:
    """(store, extraction summary, encoder name) for the prepared data (or a subset ``utts``).

    ``distributed``: extract with Lightning ``predict`` on the devices of ``cfg.trainer``, in
    resumable shards (:mod:`deeptalk_ser.embedding.distributed`); the store is then None on
    every rank but global rank 0. Otherwise in this process. Both make the same store."""
    from deeptalk_ser.embedding.extraction import extract_or_reuse
    from deeptalk_ser.utils.io import write_json_atomic

    if not data.loader.has_audio:
        # Precomputed features: the store is the arrays themselves, written once into the cache
        # (reused while the prepared manifest, which stamps the arrays' options, is unchanged).
        from deeptalk_ser.embedding.extraction import open_matching_store

        path = Path(cfg.paths.cache_dir) / "embeddings" / cfg.data.name / "precomputed"
        key = {"precomputed": data.loader.options(), "manifest": data.report.manifest.stat().st_mtime_ns}
        found = open_matching_store(path, key)
        if found:
            store, summary = found
        else:
            ids, X = data.loader.load_embeddings()  # type: ignore[attr-defined]
            summary = {"utterances_in": len(ids), "embedded": len(ids), "n_dropped_short": 0, "precomputed": True}
            store = EmbeddingStore.write(path, ids, X, {"key": key, "summary": summary})
        if summary_path:
            write_json_atomic(summary_path, summary)
        return store, summary, str(cfg.data.get("embedding_name", "precomputed"))
    encoder, windowing = build_encoder(cfg.encoder)
    store_root = Path(cfg.paths.cache_dir) / "embeddings" / cfg.data.name
    if distributed:
        from deeptalk_ser.embedding.distributed import extract_or_reuse_distributed

        trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True) if cfg.get("trainer") else None
        store, summary = extract_or_reuse_distributed(
            data.utts if utts is None else utts, encoder, windowing, store_root,
            on_error=cfg.data.get("on_error", "raise"), num_workers=cfg.extract.num_workers,
            dtype=cfg.extract.dtype, shard_size=cfg.extract.get("shard_size", 1000),
            trainer_cfg=trainer_cfg,  # type: ignore[arg-type]
            summary_path=summary_path, keep_shards=cfg.extract.get("keep_shards", False))
        return store, summary, encoder.name
    store, summary = extract_or_reuse(data.utts if utts is None else utts, encoder, windowing, store_root,
                                      on_error=cfg.data.get("on_error", "raise"),
                                      num_workers=cfg.extract.num_workers, dtype=cfg.extract.dtype,
                                      summary_path=summary_path)
    return store, summary, encoder.name


def embed_selected(cfg: DictConfig, data: PreparedData, utts: list[Utterance], summary_path: str | Path
                   ) -> tuple[EmbeddingStore, dict[str, Any], str, list[Utterance]]:
    """Embed (or reuse) ``utts`` of the prepared data; also returns those that got an embedding
    (the others were dropped as too short or skipped as unreadable, and are counted in the summary)."""
    store, summary, name = get_embeddings(cfg, data, summary_path=summary_path,
                                          utts=utts if data.loader.has_audio else None)
    embedded = set(store.ids)
    return store, summary, name, [u for u in utts if u.id in embedded]


def run_extract(cfg: DictConfig) -> dict[str, Any]:
    """``extract.py``: prepare + extract (or reuse) on the devices of ``cfg.trainer`` and write
    ``extract_summary.json`` (global rank 0; the other ranks return after their shards)."""
    data = prepare_data(cfg)
    out = Path(cfg.paths.output_dir)
    store, summary, name = get_embeddings(cfg, data, summary_path=out / "extract_summary.json", distributed=True)
    if store is None:  # a DDP rank other than 0: its shards are written, rank 0 merges
        return summary
    print(f"[extract] {name}: {summary.get('embedded')} of {summary.get('utterances_in')} utterances embedded, "
          f"{summary.get('n_dropped_short', 0)} dropped short, {summary.get('n_skipped_errors', 0)} skipped -> {store.path}")
    return {**summary, "store": str(store.path)}
