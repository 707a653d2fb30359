"""Embedding extraction at scale: Lightning ``predict`` on every device, resumable shards.

``python extract.py trainer=ddp trainer.devices=2 trainer.accelerator=cpu ...`` runs the same
per-utterance computation as :mod:`deeptalk_ser.embedding.extraction` (:func:`~deeptalk_ser.embedding.extraction.embed_one`)
in every process of a Lightning strategy and merges the result into one
:class:`~deeptalk_ser.embedding.store.EmbeddingStore` with the same cache key, so a store made here is
reused by ``evaluate.py`` and the other way round.

Sharding
    The manifest (positions ``0..n-1``) is cut into contiguous shards of ``shard_size``
    positions; shard ``k`` covers ``[k * shard_size, min(n, (k + 1) * shard_size))``. The shard
    plan depends only on the manifest and the shard size (never on the number of processes):
    it is written to ``plan.json`` by the first attempt and kept by every restart. The shards
    still to do are dealt to the ranks in a fixed stride (``pending[rank::world_size]``), each
    rank reads its shards' utterances in manifest order (no shuffling, no sampler padding:
    Lightning's distributed sampler is switched off), and a rank writes shard ``k`` as
    ``shards/rank{r}-{k:05d}.npz`` as soon as its last utterance is embedded: embedded
    positions, ids and float32 rows, the dropped positions and ids with their reason (``short``
    / ``error``, path and message), and the shard's window / audio-second counts. At most one
    shard per rank is held in memory; nothing is gathered across processes.

Atomicity and resume
    A shard is written to a temporary name, fsynced and renamed, so a shard file that exists is
    complete. On a restart with the same key the finished shards are found by reading each
    file's own index (shard number, position range, key) and checking that its embedded and
    dropped positions tile exactly its range with the manifest's ids; invalid or foreign files
    are removed and redone. Only the missing shards are embedded again, so a run killed at any
    point (SIGKILL included) and restarted gives a store identical to an uninterrupted run.
    The work directory is keyed by everything in the store key but ``on_error``: shards of a
    run that stopped on a bad file are reused by a restart with ``data.on_error=skip``.

Merge check
    After every rank has passed a barrier, rank 0 reads the shards in shard order (= manifest
    order), checks that every manifest position is covered exactly once (embedded, or dropped
    with its reason) and raises :class:`ExtractionIncomplete` naming the missing ids
    otherwise, then streams the rows into the store (one shard in memory at a time). The
    shards are deleted once the store exists (``keep_shards`` keeps them).

Errors
    ``on_error=raise``: the first unreadable file stops the run with an :class:`AudioError`
    naming it; shards already written stay on disk. ``on_error=skip``: it is dropped with
    reason ``error`` and listed in ``skipped_errors``.

Determinism: an utterance's embedding depends only on its audio, the encoder and the
windowing, not on the rank or the shard it falls in, so one process and N processes give the
same store (the test checks bit equality on CPU).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from deeptalk_ser.embedding.encoders.base import SpeakerEncoder
from deeptalk_ser.utils.errors import AudioError
from deeptalk_ser.embedding.extraction import ExtractionSummary, FrontendDataset, _keep_numpy, embed_one, open_matching_store, store_key
from deeptalk_ser.utils.io import stable_hash, write_json_atomic
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.embedding.store import EmbeddingStore
from deeptalk_ser.embedding.windowing import Windowing

log = logging.getLogger(__name__)

SHARD_RE = re.compile(r"^rank(\d+)-(\d+)\.npz$")
#: Shards per rank the automatic cap aims at, so that small manifests still spread over all ranks.
MIN_SHARDS_PER_RANK = 4
REASONS = ("short", "error")
# The writer takes positions from the batches themselves; Lightning's batch-index bookkeeping is not needed.
warnings.filterwarnings("ignore", message="Couldn.t infer the batch indices")


class ExtractionIncomplete(RuntimeError):
    """The shards do not account for every manifest utterance (names the missing ids)."""


# --------------------------------------------------------------------------------------------
# The shard plan


@dataclass(frozen=True)
class ShardPlan:
    n: int
    shard_size: int

    @property
    def n_shards(self) -> int:
        return -(-self.n // self.shard_size) if self.n else 0

    def bounds(self, k: int) -> tuple[int, int]:
        return k * self.shard_size, min(self.n, (k + 1) * self.shard_size)

    def to_dict(self) -> dict[str, int]:
        return {"n": self.n, "shard_size": self.shard_size}


def choose_shard_size(n: int, requested: int, world_size: int) -> int:
    """``requested``, capped so that every rank gets about ``MIN_SHARDS_PER_RANK`` shards."""
    if requested < 1:
        raise ValueError(f"extract.shard_size must be positive, got {requested}")
    cap = max(1, -(-n // (MIN_SHARDS_PER_RANK * max(1, world_size))))
    return max(1, min(requested, cap))


def work_key(key: dict[str, Any]) -> dict[str, Any]:
    """The store key without ``on_error``: what a shard's content depends on."""
    return {k: v for k, v in key.items() if k != "on_error"}


def load_or_create_plan(work_dir: Path, n: int, shard_size: int, wkey: dict[str, Any]) -> ShardPlan:
    """The plan of the first attempt (kept so its shards stay valid), else a new one."""
    path = work_dir / "plan.json"
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except ValueError:
            saved = {}
        if saved.get("work_key") == wkey and saved.get("n") == n and int(saved.get("shard_size", 0)) >= 1:
            if saved["shard_size"] != shard_size:
                log.info("resuming with the shard plan of the first attempt (shard_size %d, not %d)",
                         saved["shard_size"], shard_size)
            return ShardPlan(n, int(saved["shard_size"]))
        log.warning("%s belongs to other work; starting a new plan", path)
    plan = ShardPlan(n, shard_size)
    write_json_atomic(path, {**plan.to_dict(), "work_key": wkey})
    return plan


# --------------------------------------------------------------------------------------------
# Shard files


def shard_name(rank: int, k: int) -> str:
    return f"rank{rank}-{k:05d}.npz"


def write_shard(shard_dir: Path, rank: int, k: int, plan: ShardPlan, key_hash: str, dim: int,
                records: Sequence[dict[str, Any]], manifest_ids: Sequence[str]) -> Path:
    """Write shard ``k`` atomically from per-utterance records (covering exactly its range)."""
    start, stop = plan.bounds(k)
    records = sorted(records, key=lambda r: r["pos"])
    if [r["pos"] for r in records] != list(range(start, stop)):
        raise ExtractionIncomplete(f"shard {k} records do not cover positions {start}..{stop - 1}")
    kept = [r for r in records if r["emb"] is not None]
    dropped = [r for r in records if r["emb"] is None]
    return write_shard_arrays(
        shard_dir, rank, k, plan, key_hash,
        positions=np.array([r["pos"] for r in kept], np.int64),
        ids=[manifest_ids[r["pos"]] for r in kept],
        embeddings=(np.stack([r["emb"] for r in kept]) if kept else np.zeros((0, dim), np.float32)),
        dropped_positions=np.array([r["pos"] for r in dropped], np.int64),
        dropped_ids=[manifest_ids[r["pos"]] for r in dropped],
        dropped_reasons=[r["reason"] for r in dropped],
        dropped_paths=[r.get("path") or "" for r in dropped],
        dropped_messages=[r.get("message") or "" for r in dropped],
        windows=sum(r["windows"] for r in records), audio_seconds=sum(r["seconds"] for r in records))


def write_shard_arrays(shard_dir: Path, rank: int, k: int, plan: ShardPlan, key_hash: str, *,
                       positions: np.ndarray, ids: Sequence[str], embeddings: np.ndarray,
                       dropped_positions: np.ndarray | None = None, dropped_ids: Sequence[str] = (),
                       dropped_reasons: Sequence[str] = (), dropped_paths: Sequence[str] = (),
                       dropped_messages: Sequence[str] = (), windows: int = 0, audio_seconds: float = 0.0) -> Path:
    """Write ``shard_dir/rank{rank}-{k:05d}.npz`` (temporary name, fsync, rename): the shard's
    own index (number, position range, key hash, embedded and dropped positions and ids, drop
    reasons) plus its float32 rows."""
    start, stop = plan.bounds(k)

    def strings(x: Sequence[str]) -> np.ndarray:
        return np.array(list(x), dtype=str).reshape(-1)

    arrays = {
        "shard": np.int64(k), "start": np.int64(start), "stop": np.int64(stop), "rank": np.int64(rank),
        "key_hash": np.array(key_hash),
        "positions": np.asarray(positions, np.int64).reshape(-1), "ids": strings(ids),
        "embeddings": np.asarray(embeddings, np.float32),
        "dropped_positions": np.asarray(dropped_positions if dropped_positions is not None else [], np.int64).reshape(-1),
        "dropped_ids": strings(dropped_ids), "dropped_reasons": strings(dropped_reasons),
        "dropped_paths": strings(dropped_paths), "dropped_messages": strings(dropped_messages),
        "windows": np.int64(windows), "audio_seconds": np.float64(audio_seconds),
    }
    final = shard_dir / shard_name(rank, k)
    tmp = shard_dir / f".{final.name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return final


@dataclass
class ShardInfo:
    """A finished, checked shard: its index without the embedding rows."""

    k: int
    path: Path
    positions: np.ndarray
    dropped_positions: np.ndarray
    dropped_reasons: np.ndarray
    dropped_paths: np.ndarray
    dropped_messages: np.ndarray
    windows: int
    audio_seconds: float


def _npz_shape(z: Any, name: str) -> tuple[int, ...]:
    """Shape of an ``.npz`` member from its header, without reading the data."""
    with z.zip.open(f"{name}.npy") as f:
        major, _ = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, _ = read_header(f)
    return tuple(shape)


def read_shard_index(path: Path, k: int, plan: ShardPlan, key_hash: str, manifest_ids: np.ndarray) -> ShardInfo:
    """Read and check one shard's index; ``ValueError`` says why it cannot be used."""
    with np.load(path, allow_pickle=False) as z:
        if int(z["shard"]) != k or str(z["key_hash"]) != key_hash:
            raise ValueError("belongs to another shard or key")
        start, stop = plan.bounds(k)
        if (int(z["start"]), int(z["stop"])) != (start, stop):
            raise ValueError(f"covers {int(z['start'])}..{int(z['stop'])}, the plan says {start}..{stop}")
        pos, dpos = z["positions"], z["dropped_positions"]
        covered = np.sort(np.concatenate([pos, dpos]))
        if not np.array_equal(covered, np.arange(start, stop)):
            raise ValueError("its embedded and dropped positions do not tile its range")
        if not (np.array_equal(z["ids"], manifest_ids[pos]) and np.array_equal(z["dropped_ids"], manifest_ids[dpos])):
            raise ValueError("its ids differ from the manifest's")
        if _npz_shape(z, "embeddings")[0] != len(pos):
            raise ValueError("embedding rows do not match its ids")
        reasons = z["dropped_reasons"]
        if not np.isin(reasons, REASONS).all():
            raise ValueError("unknown drop reason")
        return ShardInfo(k, path, pos, dpos, reasons, z["dropped_paths"], z["dropped_messages"],
                         int(z["windows"]), float(z["audio_seconds"]))


def scan_shards(shard_dir: Path, plan: ShardPlan, key_hash: str, manifest_ids: np.ndarray,
                clean: bool = False) -> dict[int, ShardInfo]:
    """Finished shards by index. ``clean`` (rank 0 only) removes temporary and invalid files.

    If two valid files hold the same shard (e.g. two ranks after a change of world size), the
    first by name is used and the other ignored: a shard never counts twice."""
    found: dict[int, ShardInfo] = {}
    if not shard_dir.is_dir():
        return found
    for path in sorted(shard_dir.iterdir()):
        if path.name.endswith(".tmp"):
            if clean:
                path.unlink(missing_ok=True)  # a write interrupted by a kill
            continue
        m = SHARD_RE.match(path.name)
        if not m:
            continue
        k = int(m.group(2))
        if k >= plan.n_shards:
            problem = "beyond the plan"
        else:
            try:
                info = read_shard_index(path, k, plan, key_hash, manifest_ids)
            except Exception as exc:  # unreadable, truncated, foreign: redo that shard
                problem = str(exc)
            else:
                if k in found:
                    log.warning("shard %d exists twice (%s, %s): using the first", k, found[k].path.name, path.name)
                else:
                    found[k] = info
                continue
        log.warning("ignoring shard file %s: %s", path, problem)
        if clean:
            path.unlink(missing_ok=True)
    return found


def first_error(infos: dict[int, ShardInfo]) -> AudioError | None:
    """The first (manifest order) file a finished shard dropped as unreadable."""
    for k in sorted(infos):
        info = infos[k]
        for p, reason, path, msg in sorted(zip(info.dropped_positions.tolist(), info.dropped_reasons.tolist(),
                                               info.dropped_paths.tolist(), info.dropped_messages.tolist())):
            if reason == "error":
                return AudioError(path, msg)
    return None


def merge_shards(infos: dict[int, ShardInfo], plan: ShardPlan, manifest_ids: np.ndarray, store_path: Path,
                 dim: int, key: Any, dtype: str = "float32", extra: dict[str, Any] | None = None,
                 t0: float | None = None) -> tuple[EmbeddingStore, dict[str, Any]]:
    """Check coverage and write the store (rows in manifest order, one shard in memory).

    Returns the store and the extraction summary (``extra`` added; wall time since ``t0``),
    which is also the store's ``meta["summary"]``."""
    n = plan.n
    count = np.zeros(n, np.int32)
    for info in infos.values():
        np.add.at(count, info.positions, 1)
        np.add.at(count, info.dropped_positions, 1)
    missing = np.flatnonzero(count == 0)
    if len(missing):
        names = manifest_ids[missing[:20]].tolist()
        raise ExtractionIncomplete(f"{len(missing)} of {n} manifest utterances are neither embedded nor dropped "
                                   f"(missing shards?): {names}{' ...' if len(missing) > 20 else ''}")
    twice = np.flatnonzero(count > 1)
    if len(twice):  # cannot happen with one file per shard index; never count an utterance twice
        raise ExtractionIncomplete(f"{len(twice)} utterances are in more than one shard: "
                                   f"{manifest_ids[twice[:20]].tolist()}")
    order = [infos[k] for k in sorted(infos)]
    summary = ExtractionSummary(utterances_in=n)
    drops = sorted((int(p), str(r), str(path), str(msg), str(manifest_ids[p]))
                   for info in order
                   for p, r, path, msg in zip(info.dropped_positions, info.dropped_reasons,
                                              info.dropped_paths, info.dropped_messages))
    summary.dropped_short = [uid for _, r, _, _, uid in drops if r == "short"]
    summary.skipped_errors = [{"id": uid, "path": path, "reason": msg} for _, r, path, msg, uid in drops if r == "error"]
    summary.windows = int(sum(i.windows for i in order))
    summary.audio_seconds = float(sum(i.audio_seconds for i in order))
    positions = np.concatenate([i.positions for i in order]) if order else np.zeros(0, np.int64)
    ids = manifest_ids[positions].tolist()
    summary.embedded = len(ids)

    def rows():
        for info in order:
            if len(info.positions):
                with np.load(info.path, allow_pickle=False) as z:
                    emb = z["embeddings"]
                if emb.shape != (len(info.positions), dim):
                    raise ExtractionIncomplete(f"{info.path}: embeddings of shape {emb.shape}, "
                                               f"expected {(len(info.positions), dim)}")
                yield emb

    if t0 is not None:
        summary.wall_seconds = time.perf_counter() - t0
    summary_d = {**summary.to_dict(), **(extra or {})}
    store = EmbeddingStore.write_chunks(store_path, ids, rows(), dim, {"key": key, "summary": summary_d}, dtype=dtype)
    return store, summary_d


# --------------------------------------------------------------------------------------------
# Lightning pieces


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
                 key_hash: str, manifest_ids: np.ndarray, num_workers: int = 0) -> None:
        super().__init__()
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
            done = sorted(scan_shards(self.shard_dir, self.plan, self.key_hash, self.manifest_ids, clean=True))
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
        return DataLoader(ds, batch_size=None, shuffle=False, num_workers=self.num_workers, collate_fn=_keep_numpy)


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


def build_trainer(trainer_cfg: dict[str, Any] | None, callbacks: list[Any]) -> pl.Trainer:
    """A predict-only Trainer from a ``conf/trainer`` dict: strategy, devices, nodes, accelerator
    as configured; fp32 (the encoder owns its precision, which is part of the store key); no
    logger, checkpoints or sampler replacement (the shards are dealt by hand)."""
    kwargs = dict(trainer_cfg or {})
    kwargs.pop("_target_", None)
    for train_only in ("max_steps", "max_epochs", "check_val_every_n_epoch", "log_every_n_steps",
                       "sync_batchnorm", "gradient_clip_val", "accumulate_grad_batches", "val_check_interval"):
        kwargs.pop(train_only, None)
    kwargs.update(precision="32-true", logger=False, enable_checkpointing=False, enable_model_summary=False,
                  enable_progress_bar=False, use_distributed_sampler=False, callbacks=callbacks)
    return pl.Trainer(**kwargs)


def _launched_as_rank_zero() -> bool:
    """Before the strategy is set up: is this the process that will be global rank 0?"""
    return all(os.environ.get(v, "0") == "0" for v in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def extract_or_reuse_distributed(utts: Sequence[Utterance], encoder: SpeakerEncoder, windowing: Windowing,
                                 store_root: str | Path, on_error: str = "raise", num_workers: int = 0,
                                 dtype: str = "float32", shard_size: int = 1000,
                                 trainer_cfg: dict[str, Any] | None = None,
                                 summary_path: str | Path | None = None, progress: bool | None = None,
                                 keep_shards: bool = False) -> tuple[EmbeddingStore | None, dict[str, Any]]:
    """:func:`deeptalk_ser.embedding.extraction.extract_or_reuse` on every device of ``trainer_cfg``.

    Returns (store, summary) on global rank 0 and (None, {"rank": r}) on the other ranks."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    utts = list(utts)
    key = store_key(utts, encoder, windowing, on_error, dtype)
    store_root = Path(store_root)
    path = store_root / f"{encoder.name}-{stable_hash(key)}"
    found = open_matching_store(path, key)
    if found:
        if summary_path and _launched_as_rank_zero():
            write_json_atomic(summary_path, found[1])
        return found

    t0 = time.perf_counter()
    wkey = work_key(key)
    key_hash = stable_hash(wkey)
    work_dir = store_root / f".{encoder.name}-{key_hash}.work"
    shard_dir = work_dir / "shards"
    manifest_ids = np.array([u.id for u in utts], dtype=str).reshape(-1)
    if progress is None:
        progress = bool((trainer_cfg or {}).get("enable_progress_bar", True))
    writer = ShardWriter(shard_dir, key_hash, encoder.embedding_dim, manifest_ids.tolist(), progress=progress,
                         desc=f"extract[{encoder.name}]")
    trainer = build_trainer(trainer_cfg, [writer])
    world = trainer.world_size
    work_dir.mkdir(parents=True, exist_ok=True)
    plan = load_or_create_plan(work_dir, len(utts), choose_shard_size(len(utts), shard_size, world), wkey)
    done = scan_shards(shard_dir, plan, key_hash, manifest_ids)
    reused = len(done)
    if on_error == "raise" and (err := first_error(done)) is not None:
        raise err  # a finished shard (of an on_error=skip attempt) dropped this file
    if reused:
        log.info("resuming: %d of %d shard(s) already done in %s", reused, plan.n_shards, shard_dir)
    if reused < plan.n_shards:
        module = ExtractionModule(encoder, windowing, on_error)
        dm = ShardDataModule(utts, encoder, plan, shard_dir, key_hash, manifest_ids, num_workers)
        trainer.predict(module, datamodule=dm, return_predictions=False)
        if not trainer.is_global_zero:
            return None, {"rank": trainer.global_rank}
    elif not _launched_as_rank_zero():
        return None, {"rank": None}

    infos = scan_shards(shard_dir, plan, key_hash, manifest_ids)
    if on_error == "raise" and (err := first_error(infos)) is not None:
        raise err
    extra = {"ranks": world, "shards": plan.n_shards, "shard_size": plan.shard_size, "shards_reused": reused}
    store, summary_d = merge_shards(infos, plan, manifest_ids, path, encoder.embedding_dim, key, dtype=dtype,
                                    extra=extra, t0=t0)
    if summary_d["dropped_short"]:
        log.warning("dropped %d utterance(s) shorter than one window, e.g. %s", len(summary_d["dropped_short"]),
                    summary_d["dropped_short"][:3])
    if summary_d["skipped_errors"]:
        log.warning("skipped %d unreadable file(s): %s", len(summary_d["skipped_errors"]),
                    summary_d["skipped_errors"][:3])
    if not keep_shards:
        shutil.rmtree(work_dir, ignore_errors=True)
    if summary_path:
        write_json_atomic(summary_path, {**summary_d, "store": str(path)})
    return store, summary_d
