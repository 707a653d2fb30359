"""The one extraction engine: Lightning ``predict`` over what a store lacks, resumable shards, one store.

load -> front end (DataLoader workers) -> windows -> mean per utterance, in every process of
the configured Lightning strategy (a single process is world size 1). Deterministic: no
shuffling, no augmentation, an utterance's embedding depends only on its audio, the encoder
and the windowing, so one and N processes give the same store. One store per corpus, encoder,
windowing and dtype: a job embeds only the utterances it asks for that the store lacks (or whose
audio changed) and adds them. Utterances shorter than one window are dropped and counted;
unreadable files stop the run (``on_error=raise``) or are skipped and listed (``on_error=skip``).
Design: docs/design/extraction.md.
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from deeptalk_ser.data.audio.frontend import AudioFrontend
from deeptalk_ser.data.audio.io import load_audio
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.embedding.encoders.base import SpeakerEncoder
from deeptalk_ser.embedding.shards import (ExtractionIncomplete, ShardPlan, choose_shard_size, first_error,
                                          load_or_create_plan, merge_shards, scan_shards, work_key, write_shard)
from deeptalk_ser.embedding.store import (EmbeddingStore, StoreRequest, open_store, plan_request, request_summary,
                                          store_key, store_path)
from deeptalk_ser.embedding.windowing import Windowing, average_windows
from deeptalk_ser.utils.errors import AudioError
from deeptalk_ser.utils.io import stable_hash, write_json_atomic
from deeptalk_ser.utils.processes import worker_init
from deeptalk_ser.utils.progress import progress_enabled
from deeptalk_ser.utils.sharded import writer_lock

log = logging.getLogger(__name__)
# The writer takes positions from the batches themselves; Lightning's batch-index bookkeeping is not needed.
warnings.filterwarnings("ignore", message="Couldn.t infer the batch indices")


class FrontendDataset(Dataset):
    """Yields (index, conditioned waveform or the AudioError) per manifest utterance."""

    def __init__(self, utts: Sequence[Utterance], frontend: AudioFrontend) -> None:
        self.utts, self.frontend = list(utts), frontend

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | AudioError, float]:
        u = self.utts[i]
        try:
            frames = round(u.duration * u.sample_rate) if u.duration and u.sample_rate else None
            wav, sr = load_audio(u.path, expected_frames=frames)
            return i, self.frontend(wav, sr), len(wav) / sr
        except AudioError as exc:
            return i, exc, 0.0


def _keep_numpy(item: tuple) -> tuple:
    """Identity collate: keep numpy waveforms (the default would convert them to tensors)."""
    return item


def embed_one(encoder: SpeakerEncoder, wav: np.ndarray, windowing: Windowing) -> tuple[np.ndarray | None, int]:
    """(utterance embedding or None if too short, number of windows used)."""
    if windowing.window_s is None:
        emb = encoder.embed_utterance(wav)
        return emb, (0 if emb is None else 1)
    win, hop = windowing.samples(encoder.sample_rate)
    windows = encoder.embed_windowed(wav, win, hop)
    # an encoder marks a window it cannot embed (e.g. no usable frame) with NaN: leave it out
    windows = windows[np.isfinite(windows).all(axis=1)]
    if len(windows) == 0:
        return None, 0
    return average_windows(windows, windowing.renormalize), len(windows)


def place_encoder(encoder: SpeakerEncoder, device: torch.device) -> None:
    """Move an encoder's networks to ``device`` (each DDP rank gets its own GPU)."""
    modules = [v for v in vars(encoder).values() if isinstance(v, torch.nn.Module)]
    if not modules:
        return  # e.g. openSMILE features: nothing on a device
    for m in modules:
        m.to(device)
    if hasattr(encoder, "torch_device"):
        encoder.torch_device = device  # type: ignore[attr-defined]
    encoder.device = str(device)


class ExtractionModule(pl.LightningModule):
    """``predict_step`` = one utterance: its embedding (or why it has none) as a record."""

    def __init__(self, encoder: SpeakerEncoder, windowing: Windowing, on_error: str = "raise") -> None:
        super().__init__()
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.encoder, self.windowing, self.on_error = encoder, windowing, on_error

    def on_predict_start(self) -> None:
        place_encoder(self.encoder, self.device)

    def predict_step(self, batch: tuple[int, Any, float], batch_idx: int = 0) -> dict[str, Any]:
        pos, wav, seconds = batch
        pos = int(pos)
        if isinstance(wav, AudioError):
            if self.on_error == "raise":
                raise wav
            return {"pos": pos, "emb": None, "reason": "error", "path": wav.path, "message": wav.problem,
                    "windows": 0, "seconds": 0.0}
        emb, n_win = embed_one(self.encoder, wav, self.windowing)
        return {"pos": pos, "emb": emb, "reason": None if emb is not None else "short",
                "windows": int(n_win), "seconds": float(seconds)}


@dataclass
class Work:
    """What this extraction embeds: ``todo`` (positions in the job's utterances: those the store
    lacks), cut into ``plan``'s shards under ``work_dir`` (named by ``key_hash``, the hash of the
    store key and the todo list, written into every shard)."""

    todo: np.ndarray
    plan: ShardPlan
    key_hash: str
    work_dir: Path
    reused: int = 0  # shards finished by an earlier, interrupted attempt

    @property
    def shard_dir(self) -> Path:
        return self.work_dir / "shards"


class ShardDataModule(pl.LightningDataModule):
    """The utterances of this rank's pending shards, in manifest order. Global rank 0 (which
    holds the store's lock) decides the work: it cleans the shard folder, then broadcasts what to
    embed, the shard size, the work's hash and the finished shards to every rank."""

    def __init__(self, utts: Sequence[Utterance], encoder: SpeakerEncoder, work: Work | None, store_root: Path,
                 num_workers: int = 0) -> None:
        super().__init__()
        self.utts, self.encoder, self.work, self.store_root = list(utts), encoder, work, store_root
        self.num_workers = num_workers
        self.positions: list[int] = []
        self.my_shards: list[int] = []

    def setup(self, stage: str) -> None:
        trainer = self.trainer
        assert trainer is not None
        payload = None
        if trainer.is_global_zero:
            w = self.work
            assert w is not None, "global rank 0 plans the work"
            w.shard_dir.mkdir(parents=True, exist_ok=True)
            done = sorted(scan_shards(w.shard_dir, w.plan, w.key_hash, self.todo_ids(w.todo), clean=True))
            payload = (w.todo, w.plan.shard_size, w.key_hash, done)
        todo, shard_size, key_hash, done = trainer.strategy.broadcast(payload, src=0)
        self.work = Work(np.asarray(todo, np.int64), ShardPlan(len(todo), shard_size), key_hash,
                         self.store_root / f".{self.encoder.name}-{key_hash}.work")
        self.plan, self.shard_dir, self.key_hash = self.work.plan, self.work.shard_dir, key_hash
        self.manifest_ids = self.todo_ids(self.work.todo)
        done_set = set(done)
        pending = [k for k in range(self.plan.n_shards) if k not in done_set]
        self.my_shards = pending[trainer.global_rank::trainer.world_size]
        self.positions = [p for k in self.my_shards for p in range(*self.plan.bounds(k))]
        log.info("rank %d/%d: %d shard(s), %d utterance(s) to embed (%d shard(s) already done)",
                 trainer.global_rank, trainer.world_size, len(self.my_shards), len(self.positions), len(done))

    def todo_ids(self, todo: np.ndarray) -> np.ndarray:
        return np.array([self.utts[i].id for i in todo.tolist()], dtype=str).reshape(-1)

    def predict_dataloader(self) -> DataLoader:
        assert self.work is not None
        todo = [self.utts[i] for i in self.work.todo.tolist()]
        ds = Subset(FrontendDataset(todo, self.encoder.frontend), self.positions)
        return DataLoader(ds, batch_size=None, shuffle=False, num_workers=self.num_workers, collate_fn=_keep_numpy,
                          worker_init_fn=worker_init if self.num_workers else None)


class ShardWriter(BasePredictionWriter):
    """Collects the records of the shard in progress and writes it when it is complete.

    A position seen twice (a padding sampler) or one of an already written shard is ignored,
    so no utterance is counted twice. Shows rank 0's progress (utterances/s, ETA)."""

    def __init__(self, dim: int, progress: bool = True, desc: str = "extract") -> None:
        super().__init__(write_interval="batch")
        self.dim, self.progress, self.desc = dim, progress, desc
        self.buffers: dict[int, dict[int, dict[str, Any]]] = {}
        self.written: list[int] = []
        self.bar: Any = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = trainer.datamodule  # the work as rank 0 broadcast it
        self.plan: ShardPlan = dm.plan
        self.shard_dir, self.key_hash, self.manifest_ids = dm.shard_dir, dm.key_hash, list(dm.manifest_ids)
        self.mine = set(dm.my_shards)
        self.buffers, self.written = {}, []
        if self.progress and trainer.is_global_zero:
            desc = self.desc if trainer.world_size == 1 else f"{self.desc} rank 0/{trainer.world_size}"
            self.bar = tqdm(total=len(dm.positions), desc=desc, unit="utt", dynamic_ncols=True)

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any,
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        pos = prediction["pos"]
        k = pos // self.plan.shard_size
        if k not in self.mine or k in self.written:
            return
        buf = self.buffers.setdefault(k, {})
        if pos in buf:
            return
        buf[pos] = prediction
        if self.bar is not None:
            self.bar.update(1)
        start, stop = self.plan.bounds(k)
        if len(buf) == stop - start:
            write_shard(self.shard_dir, trainer.global_rank, k, self.plan, self.key_hash, self.dim,
                        list(self.buffers.pop(k).values()), self.manifest_ids)
            self.written.append(k)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.buffers:
            raise ExtractionIncomplete(f"rank {trainer.global_rank}: shards {sorted(self.buffers)} incomplete "
                                       "at the end of its data")
        trainer.strategy.barrier("extract-shards-written")  # every rank's shards are on disk


# --------------------------------------------------------------------------------------------
# Entry point


def build_trainer(trainer_cfg: dict[str, Any] | None, callbacks: list[Any], encoder: SpeakerEncoder) -> pl.Trainer:
    """A predict-only Trainer from a ``conf/trainer`` dict (``trainer=predict``, or a training
    variant such as ``trainer=ddp``, whose training-only keys are dropped): strategy, devices,
    nodes, accelerator as configured; fp32 (the encoder owns its precision, which is part of
    the store key); no logger, checkpoints or sampler replacement (the shards are dealt by hand).
    ``None``: one process on the encoder's own device."""
    if trainer_cfg is None:
        trainer_cfg = {"accelerator": "gpu" if str(encoder.device).startswith("cuda") else "cpu", "devices": 1}
    return pl.Trainer(**predict_trainer_kwargs(trainer_cfg), callbacks=callbacks)


def predict_trainer_kwargs(trainer_cfg: dict[str, Any]) -> dict[str, Any]:
    """The Trainer arguments of :func:`build_trainer` but its callbacks (jobs check them before
    any preparation: ``runs/common.py``)."""
    kwargs = dict(trainer_cfg)
    kwargs.pop("_target_", None)
    for train_only in ("max_steps", "max_epochs", "check_val_every_n_epoch", "log_every_n_steps",
                       "sync_batchnorm", "gradient_clip_val", "gradient_clip_algorithm", "accumulate_grad_batches", "val_check_interval"):
        kwargs.pop(train_only, None)
    kwargs.update(precision="32-true", logger=False, enable_checkpointing=False, enable_model_summary=False,
                  enable_progress_bar=False, use_distributed_sampler=False)
    return kwargs


def _launched_as_rank_zero() -> bool:
    """Before the strategy is set up: will this process be global rank 0? (Lightning reads the
    launcher's rank variables when it is imported.)"""
    return rank_zero_only.rank == 0


def extract_or_reuse(utts: Sequence[Utterance], encoder: SpeakerEncoder, windowing: Windowing,
                     store_root: str | Path, on_error: str = "raise", num_workers: int = 0,
                     dtype: str = "float32", shard_size: int = 1000,
                     trainer_cfg: dict[str, Any] | None = None,
                     summary_path: str | Path | None = None, progress: bool | None = None,
                     keep_shards: bool = False) -> tuple[EmbeddingStore | None, dict[str, Any]]:
    """The store of (encoder, windowing, dtype) under ``store_root`` (one per corpus), holding a
    row (or a recorded drop) for every one of ``utts``: reused as it is when it already does,
    else the utterances it lacks (or whose audio changed) are extracted on every device of
    ``trainer_cfg`` and added to it. A complete store is opened without writing anything.

    Returns (store, summary) on global rank 0 and (None, {"rank": r}) on the other ranks."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    utts = list(utts)
    key = store_key(encoder, windowing, dtype)
    store_root = Path(store_root)
    path = store_path(store_root, encoder.name, key)
    base = open_store(path, key)
    request = plan_request(base, utts)
    if on_error == "raise":
        _raise_recorded_error(request)
    if base is not None and not request.todo:
        return _reused(base, utts, request, summary_path)

    if progress is None:
        progress = progress_enabled((trainer_cfg or {}).get("enable_progress_bar"))
    # One writer per store: a second run on the same cache waits here, then reuses what the first
    # wrote (it never deletes the first run's shards). Only the process that becomes global rank 0
    # locks and decides the work; the other ranks of a DDP run follow it through the collectives
    # of ``predict``.
    lock = store_lock(path) if _launched_as_rank_zero() else nullcontext()
    with lock:
        return _extract_locked(utts, encoder, windowing, store_root, path, key, (base, request), on_error,
                               num_workers, dtype, shard_size, trainer_cfg, summary_path, progress, keep_shards)


def _raise_recorded_error(request: StoreRequest) -> None:
    """``on_error=raise``: a file the store recorded as unreadable (an ``on_error=skip`` run
    skipped it) stops the job at once, named, before anything is embedded."""
    if request.reused_errors:
        uid, rec = request.reused_errors[0]
        raise AudioError(rec.get("path") or uid, rec.get("message") or "unreadable")


def _reused(store: EmbeddingStore, utts: list[Utterance], request: StoreRequest,
            summary_path: str | Path | None) -> tuple[EmbeddingStore, dict[str, Any]]:
    """Every utterance answered by the store: its summary (written by rank 0), nothing written."""
    log.info("reusing embedding store %s (%d of its %d rows asked for)", store.path, len(utts), len(store.ids))
    summary = request_summary(store, utts, request)
    if summary_path and _launched_as_rank_zero():
        write_json_atomic(summary_path, summary)
    return store, summary


def store_lock(path: Path) -> AbstractContextManager[None]:
    """The lock beside a store (``.<store>.lock``, :func:`writer_lock`): a second run says it waits;
    a cache that cannot be written (the store, missing, would have been reused otherwise) is a
    :class:`DataError` saying that extracting needs write access."""
    return writer_lock(path.with_name(f".{path.name}.lock"), path, "embedding store for these settings")


def _extract_locked(utts: list[Utterance], encoder: SpeakerEncoder, windowing: Windowing, store_root: Path,
                    path: Path, key: dict[str, Any], seen: tuple[EmbeddingStore | None, StoreRequest], on_error: str,
                    num_workers: int, dtype: str, shard_size: int, trainer_cfg: dict[str, Any] | None,
                    summary_path: str | Path | None, progress: bool,
                    keep_shards: bool) -> tuple[EmbeddingStore | None, dict[str, Any]]:
    """:func:`extract_or_reuse` once this process holds the store's lock (or is not rank 0:
    ``seen`` is the store and request it saw without the lock; rank 0's work is broadcast)."""
    t0 = time.perf_counter()
    writer = ShardWriter(encoder.embedding_dim, progress=progress, desc=f"extract[{encoder.name}]")
    trainer = build_trainer(trainer_cfg, [writer], encoder)
    world = trainer.world_size
    base, request = seen
    if _launched_as_rank_zero():  # the store as it is now that this run holds its lock
        base = open_store(path, key)
        request = plan_request(base, utts)
        if on_error == "raise":
            _raise_recorded_error(request)
        if base is not None and not request.todo and world == 1:
            return _reused(base, utts, request, summary_path)  # another run added them meanwhile
    work = _plan_work(utts, request, key, store_root, encoder.name, shard_size, world, on_error)
    if world > 1 or work.reused < work.plan.n_shards:
        dm = ShardDataModule(utts, encoder, work, store_root, num_workers)
        trainer.predict(ExtractionModule(encoder, windowing, on_error), datamodule=dm, return_predictions=False)
        if not trainer.is_global_zero:
            return None, {"rank": trainer.global_rank}
    elif not _launched_as_rank_zero():
        return None, {"rank": None}
    if base is not None and not len(work.todo):  # another run added them while this one waited for the lock
        shutil.rmtree(work.work_dir, ignore_errors=True)
        return _reused(base, utts, request, summary_path)
    store, work_summary = _merge(utts, encoder, path, key, dtype, work, base, request, on_error, world, t0)
    if not keep_shards:
        shutil.rmtree(work.work_dir, ignore_errors=True)
    summary = {**work_summary, **request_summary(store, utts, request)}
    if summary_path:
        write_json_atomic(summary_path, summary)
    return store, summary


def _ids(utts: list[Utterance], positions: np.ndarray) -> np.ndarray:
    return np.array([utts[i].id for i in positions.tolist()], dtype=str).reshape(-1)


def _plan_work(utts: list[Utterance], request: StoreRequest, key: dict[str, Any], store_root: Path, name: str,
               shard_size: int, world: int, on_error: str) -> Work:
    """The shards of what the store lacks: their plan (kept from a first, interrupted attempt at
    the same work, so its finished shards stay valid) and the shards already finished."""
    todo = np.asarray(request.todo, np.int64)
    listing = [[utts[i].id, request.fingerprints[i]] for i in request.todo]
    wkey = {**work_key(key), "todo": stable_hash(listing, 32), "n_todo": len(listing)}
    key_hash = stable_hash(wkey)
    work_dir = store_root / f".{name}-{key_hash}.work"
    work_dir.mkdir(parents=True, exist_ok=True)
    plan = load_or_create_plan(work_dir, len(todo), choose_shard_size(len(todo), shard_size, world), wkey)
    done = scan_shards(work_dir / "shards", plan, key_hash, _ids(utts, todo))
    if on_error == "raise" and (err := first_error(done)) is not None:
        raise err  # a finished shard (of an on_error=skip attempt) dropped this file
    if done:
        log.info("resuming: %d of %d shard(s) already done in %s", len(done), plan.n_shards, work_dir / "shards")
    return Work(todo, plan, key_hash, work_dir, reused=len(done))


def _merge(utts: list[Utterance], encoder: SpeakerEncoder, path: Path, key: dict[str, Any], dtype: str, work: Work,
           base: EmbeddingStore | None, request: StoreRequest, on_error: str, world: int, t0: float
           ) -> tuple[EmbeddingStore, dict[str, Any]]:
    """Rank 0, every shard on disk: the store rewritten with the new rows (and drops) added."""
    ids = _ids(utts, work.todo)
    infos = scan_shards(work.shard_dir, work.plan, work.key_hash, ids)
    if on_error == "raise" and (err := first_error(infos)) is not None:
        raise err
    extra = {"ranks": world, "shards": work.plan.n_shards, "shard_size": work.plan.shard_size,
             "shards_reused": work.reused}
    store, summary = merge_shards(infos, work.plan, ids, path, encoder.embedding_dim, key, dtype=dtype, extra=extra,
                                  t0=t0, base=base, fingerprints=[request.fingerprints[i] for i in work.todo.tolist()])
    if summary["dropped_short"]:
        log.warning("dropped %d utterance(s) shorter than one window or without signal (silent, no voiced "
                    "frame), e.g. %s", len(summary["dropped_short"]), summary["dropped_short"][:3])
    if summary["skipped_errors"]:
        log.warning("skipped %d unreadable file(s): %s", len(summary["skipped_errors"]), summary["skipped_errors"][:3])
    keep = ("windows", "audio_seconds", "wall_seconds", "real_time_factor", "audio_s_per_s", *extra)
    return store, {k: summary[k] for k in keep}
