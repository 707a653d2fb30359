"""What every job shares: the run directory, the prepared manifest, the encoder built from its
config, the embeddings (extracted or reused) and the closing of a run (results.json, loggers,
printed table)."""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from deeptalk_ser.data.corpora.base import CorpusLoader
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.data.prepare import PrepareReport, load_prepared
from deeptalk_ser.embedding.encoders.base import SpeakerEncoder
from deeptalk_ser.embedding.extraction import predict_trainer_kwargs
from deeptalk_ser.embedding.fusion import FusedEmbeddings, fuse
from deeptalk_ser.embedding.layers import LayerView, extract_or_reuse_layer
from deeptalk_ser.embedding.store import EmbeddingStore, open_matching_store
from deeptalk_ser.embedding.windowing import Windowing
from deeptalk_ser.evaluation.classifiers.fusion import BlockScaler
from deeptalk_ser.evaluation.labels import describe_counts
from deeptalk_ser.utils.errors import RUN_DIR, ConfigError, stage
from deeptalk_ser.utils.io import write_json_atomic
from deeptalk_ser.utils.loggers import build_loggers, log_run
from deeptalk_ser.utils.reporting import SUMMARY_COLUMNS, markdown_table, summary_row
from deeptalk_ser.utils.threads import configure_threads_from_config

log = logging.getLogger(__name__)
#: what a job reads its features from: one encoder's store, or the parts' stores side by side
Embeddings = Union[EmbeddingStore, FusedEmbeddings, LayerView]


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
    if report.skipped:  # said again on every run that reuses the manifest: the files are still left out
        log.warning("%d file(s) skipped at prepare (data.on_error=skip), e.g. %s", len(report.skipped), report.skipped[0])
    return PreparedData(loader, utts, report)


def with_prepare_skips(summary: dict[str, Any], data: PreparedData) -> dict[str, Any]:
    """An extraction summary that also lists the files prepare skipped (they never reached it)."""
    return {**summary, "skipped_at_prepare": data.report.skipped, "n_skipped_at_prepare": len(data.report.skipped)}


def skip_line(summary: dict[str, Any]) -> str:
    """What a run left out, for its final line: every skip at every stage, counted."""
    return (f"{summary.get('n_skipped_at_prepare', 0)} skipped at prepare, {summary.get('n_skipped_errors', 0)} "
            f"unreadable at extraction, {summary.get('n_dropped_short', 0)} dropped short or silent")


def left_out_line(results: dict[str, Any]) -> str:
    """What a task left out by label (``labels_left_out``) and what its score must be read with
    (``warnings``), for the final line: ``; left out 12 utterances with labels not in task er: ...``."""
    parts = []
    left = results.get("labels_left_out") or {}
    if left:
        n = sum(left.values())
        parts.append(f"left out {n} utterance{'' if n == 1 else 's'} with labels not in task "
                     f"{results.get('task')}: {describe_counts(left)}")
    return "".join(f"; {p}" for p in [*parts, *(results.get("warnings") or [])])


def start_run(cfg: DictConfig, test_data: bool = False) -> tuple[Path, PreparedData]:
    """The run directory (created) and the prepared data: the first two steps of every job.
    ``test_data``: the job reads ``cfg.test_data`` (cross-corpus ER/ED); any other job refuses it."""
    if cfg.get("test_data") is not None and not test_data:
        raise ConfigError("test_data", f"a train corpus / test corpus run is task=er or task=ed, not task="
                                       f"{OmegaConf.select(cfg, 'task.name', default='?')}")
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.get("trainer"):  # the extraction devices: a bad value stops the job before the manifest
        check_trainer(predict_trainer_kwargs(OmegaConf.to_container(cfg.trainer, resolve=True)))  # type: ignore[arg-type]
    configure_threads_from_config(cfg, "extract.num_workers")  # never more torch threads than cores (utils/threads.py)
    return out, prepare_data(cfg)


def check_trainer(kwargs: dict[str, Any], target: str = "lightning.pytorch.Trainer") -> None:
    """Build the job's Trainer once from ``kwargs`` (``trainer.*``) and drop it, before any
    preparation: Lightning's own checks (``max_steps=-5``, ``devices=0``, an unknown precision, no
    GPU for ``accelerator=gpu``) then stop the job at once as a :class:`ConfigError` naming the key,
    not after the manifest and the stores are built. Building only parses the arguments (no
    process starts, no device memory is taken), quietly: the real Trainer says it all again."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    every = kwargs.get("check_val_every_n_epoch")  # not checked by Lightning until validation divides by it
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ConfigError("trainer.check_val_every_n_epoch", f"must be a positive integer or null, got {every!r}")
    quiet = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in quiet]
    try:
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            get_class(target)(**{**kwargs, "logger": False, "callbacks": []})
    except (MisconfigurationException, ValueError, TypeError) as exc:
        message = " ".join(str(exc).split())
        raise ConfigError(_trainer_key(message, kwargs), message) from exc
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)


def _trainer_key(message: str, kwargs: dict[str, Any]) -> str:
    """The ``trainer.<name>`` a Lightning message is about: the first argument it names, else the
    first whose string value it names (``No supported gpu backend`` for ``accelerator=gpu``), else
    ``trainer``."""
    def at(word: str) -> int | None:
        m = re.search(rf"\b{re.escape(word)}\b", message, re.IGNORECASE)
        return m.start() if m else None

    hits = ([(pos, k) for k in kwargs if (pos := at(k)) is not None]
            or [(pos, k) for k, v in kwargs.items() if isinstance(v, str) and len(v) > 1 and (pos := at(v)) is not None])
    return f"trainer.{min(hits)[1]}" if hits else "trainer"


def encoder_from_config(enc_cfg: DictConfig) -> tuple[SpeakerEncoder, Windowing]:
    """The encoder object and the windowing, which ``conf/encoder`` keeps side by side."""
    params = OmegaConf.to_container(enc_cfg, resolve=True)
    assert isinstance(params, dict)
    win = params.pop("windowing", None) or {}
    encoder = instantiate(params, _convert_="all")
    return encoder, Windowing(**win)


def _precomputed_store(cfg: DictConfig, data: PreparedData) -> tuple[EmbeddingStore, dict[str, Any]]:
    """Precomputed features: the store is the arrays themselves, written once into the cache
    (reused while the prepared manifest, which stamps the arrays' options, is unchanged)."""
    path = Path(cfg.paths.cache_dir) / "embeddings" / cfg.data.name / "precomputed"
    key = {"precomputed": data.loader.options(), "manifest": data.report.manifest.stat().st_mtime_ns}
    found = open_matching_store(path, key)
    if found:
        return found
    ids, X = data.loader.load_embeddings()  # type: ignore[attr-defined]
    summary = {"utterances_in": len(ids), "embedded": len(ids), "n_dropped_short": 0, "precomputed": True}
    return EmbeddingStore.write(path, ids, X, {"key": key, "summary": summary}), summary


def get_embeddings(cfg: DictConfig, data: PreparedData, utts: list[Utterance] | None = None,
                   summary_path: str | Path | None = None) -> tuple[Embeddings | None, dict[str, Any], str]:
    """(store, extraction summary, encoder name) for the prepared data (or a subset ``utts``),
    read from the corpus's store of this encoder; what it lacks is extracted on the devices of
    ``cfg.trainer`` (one process without it) and added. Under DDP the store is None on every
    rank but global rank 0."""
    with stage("extraction", Path(cfg.paths.cache_dir) / "embeddings"):
        return _embeddings(cfg, data, utts, summary_path)


def _embeddings(cfg: DictConfig, data: PreparedData, utts: list[Utterance] | None,
                summary_path: str | Path | None) -> tuple[Embeddings | None, dict[str, Any], str]:
    if not data.loader.has_audio:
        store, summary = _precomputed_store(cfg, data)
        if summary_path:
            write_json_atomic(summary_path, summary)
        return store, summary, str(cfg.data.get("embedding_name", "precomputed"))
    if "parts" in cfg.encoder:  # encoder=fusion: each part's store, read side by side
        return _fused_embeddings(cfg, data, utts, summary_path)
    encoder, windowing = encoder_from_config(cfg.encoder)
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True) if cfg.get("trainer") else None
    store, summary = extract_or_reuse_layer(  # a layer=k job reads a complete layer=all store (encoder=ssl)
        data.utts if utts is None else utts, encoder, windowing, Path(cfg.paths.cache_dir) / "embeddings" / cfg.data.name,
        on_error=cfg.data.get("on_error", "raise"), num_workers=cfg.extract.num_workers, dtype=cfg.extract.dtype,
        shard_size=cfg.extract.get("shard_size", 1000), trainer_cfg=trainer_cfg,  # type: ignore[arg-type]
        summary_path=summary_path, keep_shards=cfg.extract.get("keep_shards", False))
    if store is not None:
        summary = with_prepare_skips(summary, data)
        if summary_path:
            write_json_atomic(summary_path, summary)
    return store, summary, encoder.name


def _fused_embeddings(cfg: DictConfig, data: PreparedData, utts: list[Utterance] | None,
                      summary_path: str | Path | None) -> tuple[FusedEmbeddings, dict[str, Any], str]:
    """``encoder=fusion``: every part from its own store (``encoder=<part>``'s, reused or
    extended), read side by side; the head scales each block on its training fold."""
    parts, summaries = [], {}
    for key, part_cfg in cfg.encoder.parts.items():
        sub = cfg.copy()
        with open_dict(sub):
            sub.encoder = part_cfg
        store, summary, name = get_embeddings(sub, data, utts)
        if store is None:
            raise RuntimeError("encoder=fusion runs in one process")
        parts.append((name, store))
        summaries[str(key)] = summary
    fused, summary = fuse(parts, [u.id for u in (data.utts if utts is None else utts)])
    counts = {c: max(int(s.get(c, 0)) for s in summaries.values()) for c in ("n_dropped_short", "n_skipped_errors")}
    counts.update({c: sum(int(s.get(c, 0)) for s in summaries.values()) for c in ("n_reused", "n_embedded")})
    reused = [s["reused_store"] for s in summaries.values() if s.get("reused_store")]
    summary = with_prepare_skips({**summary, **counts, **({"reused_store": reused} if reused else {}),
                                  "stores": {k: s.get("store") for k, s in summaries.items()}, "parts": summaries}, data)
    if summary_path:
        write_json_atomic(summary_path, summary)
    return fused, summary, "fusion(" + "+".join(n for n, _ in parts) + ")"


def embed_selected(cfg: DictConfig, data: PreparedData, utts: list[Utterance], summary_path: str | Path
                   ) -> tuple[Embeddings, dict[str, Any], str, list[Utterance]]:
    """Embed (or reuse) ``utts`` of the prepared data; also returns those that got an embedding
    (the others were dropped as too short or skipped as unreadable, and are counted in the summary)."""
    store, summary, name = get_embeddings(cfg, data, utts=utts if data.loader.has_audio else None,
                                          summary_path=summary_path)
    if store is None:
        raise RuntimeError("evaluation jobs run in one process; use extract.py for multi-process extraction")
    embedded = store.index()
    return store, summary, name, [u for u in utts if u.id in embedded]


def scored_features(store: Embeddings, ids: Sequence[str]) -> np.ndarray:
    """Features of ``ids`` for a task that trains nothing (cosine scoring): one encoder's rows as
    they are; fused blocks each scaled to unit total variance over these utterances (label-free,
    no fold to keep apart; a trained head fits this scaling on its training fold instead)."""
    X = store.select(ids)
    return BlockScaler(store.blocks).fit_transform(X) if isinstance(store, FusedEmbeddings) and len(X) else X


def finish_run(cfg: DictConfig, out: Path, results: dict[str, Any], metrics: dict[str, float],
               images: dict[str, Path] | None = None, table: bool = True,
               tables: dict[str, list[dict[str, Any]]] | None = None,
               confusion: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``results.json`` (atomically), send metrics, images, tables (``{key: rows}``, e.g.
    per fold) and a confusion matrix (W&B plot) to the configured loggers, print the one-line
    summary table and where the results are."""
    with stage("results", out, RUN_DIR):
        write_json_atomic(out / "results.json", results)
        config = OmegaConf.to_container(cfg, resolve=True)
        if "train_data" in results:  # the dashboard filters runs by the corpora a head was trained and tested on
            config["corpora"] = {"train_data": results["train_data"], "test_data": results["test_data"]}  # type: ignore[index]
        log_run(build_loggers(cfg.get("logger")), config, metrics, images or {}, tables=tables, confusion=confusion)
    if table:
        print(markdown_table([summary_row(results)], SUMMARY_COLUMNS))
        for w in results.get("warnings") or []:  # what the table's numbers must be read with (confounds, degenerate folds)
            print(f"WARNING: {w}")
    extraction = results.get("extraction") or {}
    print(f"results -> {out / 'results.json'} ({skip_line(extraction)}{left_out_line(results)})")
    return results
