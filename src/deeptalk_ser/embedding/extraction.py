"""The one extraction engine: Lightning ``predict`` over the manifest, resumable shards, one store.

load -> front end (DataLoader workers) -> windows -> mean per utterance, in every process of
the configured Lightning strategy (a single process is world size 1). Deterministic: no
shuffling, no augmentation, an utterance's embedding depends only on its audio, the encoder
and the windowing, so one and N processes give the same store. Utterances shorter than one
window are dropped and counted; unreadable files stop the run (``on_error=raise``) or are
skipped and listed (``on_error=skip``). Design: docs/design/extraction.md.
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from filelock import FileLock, Timeout
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
from deeptalk_ser.embedding.store import EmbeddingStore, open_matching_store, store_key, store_path
from deeptalk_ser.embedding.windowing import Windowing, average_windows
from deeptalk_ser.utils.errors import AudioError
from deeptalk_ser.utils.io import stable_hash, write_json_atomic
from deeptalk_ser.utils.processes import worker_init

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


class ShardDataModule(pl.LightningDataModule):
    """The utterances of this rank's pending shards, in manifest order; rank 0 decides which
    shards are pending (after cleaning the shard folder) and broadcasts that to every rank."""

    def __init__(self, utts: Sequence[Utterance], encoder: SpeakerEncoder, plan: ShardPlan, shard_dir: Path,
                 key_hash: str, manifest_ids: np.ndarray, num_workers: int = 0, nothing_pending: bool = False) -> None:
        super().__init__()
        self.nothing_pending = nothing_pending  # the store exists (written by another run): only follow rank 0
        self.utts, self.encoder, self.plan, self.shard_dir = list(utts), encoder, plan, shard_dir
        self.key_hash, self.manifest_ids, self.num_workers = key_hash, manifest_ids, num_workers
        self.positions: list[int] = []
        self.my_shards: list[int] = []

    def setup(self, stage: str) -> None:
        trainer = self.trainer
        assert trainer is not None
        done = None
        if trainer.is_global_zero:
            self.shard_dir.mkdir(parents=True, exist_ok=True)
            done = (list(range(self.plan.n_shards)) if self.nothing_pending else
                    sorted(scan_shards(self.shard_dir, self.plan, self.key_hash, self.manifest_ids, clean=True)))
        plan_size, done = trainer.strategy.broadcast((self.plan.shard_size, done), src=0)
        if plan_size != self.plan.shard_size:
            raise RuntimeError(f"ranks disagree on the shard plan ({plan_size} vs {self.plan.shard_size})")
        done_set = set(done)
        pending = [k for k in range(self.plan.n_shards) if k not in done_set]
        self.my_shards = pending[trainer.global_rank::trainer.world_size]
        self.positions = [p for k in self.my_shards for p in range(*self.plan.bounds(k))]
        log.info("rank %d/%d: %d shard(s), %d utterance(s) to embed (%d shard(s) already done)",
                 trainer.global_rank, trainer.world_size, len(self.my_shards), len(self.positions), len(done))

    def predict_dataloader(self) -> DataLoader:
        ds = Subset(FrontendDataset(self.utts, self.encoder.frontend), self.positions)
        return DataLoader(ds, batch_size=None, shuffle=False, num_workers=self.num_workers, collate_fn=_keep_numpy,
                          worker_init_fn=worker_init if self.num_workers else None)


class ShardWriter(BasePredictionWriter):
    """Collects the records of the shard in progress and writes it when it is complete.

    A position seen twice (a padding sampler) or one of an already written shard is ignored,
    so no utterance is counted twice. Shows rank 0's progress (utterances/s, ETA)."""

    def __init__(self, shard_dir: Path, key_hash: str, dim: int, manifest_ids: Sequence[str],
                 progress: bool = True, desc: str = "extract") -> None:
        super().__init__(write_interval="batch")
        self.shard_dir, self.key_hash, self.dim, self.manifest_ids = shard_dir, key_hash, dim, manifest_ids
        self.progress, self.desc = progress, desc
        self.buffers: dict[int, dict[int, dict[str, Any]]] = {}
        self.written: list[int] = []
        self.bar: Any = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = trainer.datamodule
        self.plan: ShardPlan = dm.plan
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
    kwargs = dict(trainer_cfg)
    kwargs.pop("_target_", None)
    for train_only in ("max_steps", "max_epochs", "check_val_every_n_epoch", "log_every_n_steps",
                       "sync_batchnorm", "gradient_clip_val", "accumulate_grad_batches", "val_check_interval"):
        kwargs.pop(train_only, None)
    kwargs.update(precision="32-true", logger=False, enable_checkpointing=False, enable_model_summary=False,
                  enable_progress_bar=False, use_distributed_sampler=False, callbacks=callbacks)
    return pl.Trainer(**kwargs)


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
    """Open the store matching (utterances, encoder, windowing, on_error, dtype) under
    ``store_root``, or extract it on every device of ``trainer_cfg`` and merge it.

    Returns (store, summary) on global rank 0 and (None, {"rank": r}) on the other ranks."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    utts = list(utts)
    key = store_key(utts, encoder, windowing, on_error, dtype)
    store_root = Path(store_root)
    path = store_path(store_root, encoder.name, key)
    found = open_matching_store(path, key)
    if found:
        if summary_path and _launched_as_rank_zero():
            write_json_atomic(summary_path, found[1])
        return found

    if progress is None:
        progress = bool((trainer_cfg or {}).get("enable_progress_bar", True))
    # One writer per store: a second run on the same cache waits here, then reuses what the first
    # wrote (it never deletes the first run's shards). Only the process that becomes global rank 0
    # locks; the other ranks of a DDP run follow it through the collectives of ``predict``.
    lock = store_lock(path) if _launched_as_rank_zero() else nullcontext()
    with lock:
        return _extract_locked(utts, encoder, windowing, store_root, path, key, on_error, num_workers, dtype,
                               shard_size, trainer_cfg, summary_path, progress, keep_shards)


def store_lock(path: Path) -> FileLock:
    """The lock file beside a store (``.<store>.lock``); says so when another run holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path.with_name(f".{path.name}.lock")))
    try:
        lock.acquire(timeout=0)
        lock.release()
    except Timeout:
        log.warning("another run is writing embedding store %s (lock %s): waiting for it", path, lock.lock_file)
    return lock


def _extract_locked(utts: list[Utterance], encoder: SpeakerEncoder, windowing: Windowing, store_root: Path,
                    path: Path, key: dict[str, Any], on_error: str, num_workers: int, dtype: str, shard_size: int,
                    trainer_cfg: dict[str, Any] | None, summary_path: str | Path | None, progress: bool,
                    keep_shards: bool) -> tuple[EmbeddingStore | None, dict[str, Any]]:
    """:func:`extract_or_reuse` once this process holds the store's lock (or is not rank 0)."""
    t0 = time.perf_counter()
    wkey = work_key(key)
    key_hash = stable_hash(wkey)
    work_dir = store_root / f".{encoder.name}-{key_hash}.work"
    shard_dir = work_dir / "shards"
    manifest_ids = np.array([u.id for u in utts], dtype=str).reshape(-1)
    writer = ShardWriter(shard_dir, key_hash, encoder.embedding_dim, manifest_ids.tolist(), progress=progress,
                         desc=f"extract[{encoder.name}]")
    trainer = build_trainer(trainer_cfg, [writer], encoder)
    world = trainer.world_size
    finished_meanwhile = open_matching_store(path, key) if _launched_as_rank_zero() else None
    if finished_meanwhile and world == 1:
        if summary_path:
            write_json_atomic(summary_path, finished_meanwhile[1])
        return finished_meanwhile
    work_dir.mkdir(parents=True, exist_ok=True)
    plan = load_or_create_plan(work_dir, len(utts), choose_shard_size(len(utts), shard_size, world), wkey)
    done = scan_shards(shard_dir, plan, key_hash, manifest_ids)
    reused = len(done)
    if on_error == "raise" and (err := first_error(done)) is not None:
        raise err  # a finished shard (of an on_error=skip attempt) dropped this file
    if reused:
        log.info("resuming: %d of %d shard(s) already done in %s", reused, plan.n_shards, shard_dir)
    if finished_meanwhile or reused < plan.n_shards:
        module = ExtractionModule(encoder, windowing, on_error)
        dm = ShardDataModule(utts, encoder, plan, shard_dir, key_hash, manifest_ids, num_workers,
                             nothing_pending=finished_meanwhile is not None)
        trainer.predict(module, datamodule=dm, return_predictions=False)
        if not trainer.is_global_zero:
            return None, {"rank": trainer.global_rank}
        if finished_meanwhile:  # another run wrote the store while this DDP run waited for the lock
            shutil.rmtree(work_dir, ignore_errors=True)
            if summary_path:
                write_json_atomic(summary_path, finished_meanwhile[1])
            return finished_meanwhile
    elif not _launched_as_rank_zero():
        return None, {"rank": None}

    infos = scan_shards(shard_dir, plan, key_hash, manifest_ids)
    if on_error == "raise" and (err := first_error(infos)) is not None:
        raise err
    extra = {"ranks": world, "shards": plan.n_shards, "shard_size": plan.shard_size, "shards_reused": reused}
    store, summary_d = merge_shards(infos, plan, manifest_ids, path, encoder.embedding_dim, key, dtype=dtype,
                                    extra=extra, t0=t0)
    if summary_d["dropped_short"]:
        log.warning("dropped %d utterance(s) shorter than one window or without signal (silent, no voiced "
                    "frame), e.g. %s", len(summary_d["dropped_short"]),
                    summary_d["dropped_short"][:3])
    if summary_d["skipped_errors"]:
        log.warning("skipped %d unreadable file(s): %s", len(summary_d["skipped_errors"]),
                    summary_d["skipped_errors"][:3])
    if not keep_shards:
        shutil.rmtree(work_dir, ignore_errors=True)
    if summary_path:
        write_json_atomic(summary_path, {**summary_d, "store": str(path)})
    return store, summary_d
