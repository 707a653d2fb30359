"""Shards of an extraction: the plan, the shard files' content, the resume check and the merge.

The plan cuts the work into contiguous shards that depend only on the work and the shard
size, never on the number of processes, so a restart with other ranks keeps every finished
shard. Atomic writes, the resume scan and the count check are the shared mechanism of
``utils/sharded.py``. Design: docs/design/extraction.md.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from deeptalk_ser.embedding.store import EmbeddingStore
from deeptalk_ser.utils.errors import AudioError
from deeptalk_ser.utils.io import write_json_atomic
from deeptalk_ser.utils.sharded import (ShardsIncomplete, check_coverage, finished_shards, matching_json,
                                        write_shard_file)

log = logging.getLogger(__name__)

SHARD_RE = re.compile(r"^rank(\d+)-(\d+)\.npz$")
#: Shards per rank the automatic cap aims at, so that small manifests still spread over all ranks.
MIN_SHARDS_PER_RANK = 4
REASONS = ("short", "error")


#: the shards do not account for every utterance of the work (names the missing ids)
ExtractionIncomplete = ShardsIncomplete


@dataclass
class ExtractionSummary:
    utterances_in: int = 0
    embedded: int = 0
    dropped_short: list[str] = field(default_factory=list)
    skipped_errors: list[dict[str, str]] = field(default_factory=list)
    windows: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["n_dropped_short"], d["n_skipped_errors"] = len(self.dropped_short), len(self.skipped_errors)
        d["real_time_factor"] = self.wall_seconds / self.audio_seconds if self.audio_seconds else None
        d["audio_s_per_s"] = self.audio_seconds / self.wall_seconds if self.wall_seconds else None
        return d


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
    saved = matching_json(path, {"work_key": wkey, "n": n})
    if saved is not None and isinstance(saved.get("shard_size"), int) and saved["shard_size"] >= 1:
        if saved["shard_size"] != shard_size:
            log.info("resuming with the shard plan of the first attempt (shard_size %d, not %d)",
                     saved["shard_size"], shard_size)
        return ShardPlan(n, saved["shard_size"])
    if path.is_file():
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
    """Write ``shard_dir/rank{rank}-{k:05d}.npz`` atomically (:func:`write_shard_file`): the shard's
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
    return write_shard_file(shard_dir / shard_name(rank, k), lambda f: np.savez(f, **arrays))


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
    """Finished shards by index (:func:`finished_shards`). ``clean`` (rank 0 only, holding the
    store's lock) removes temporary and invalid files."""

    def parse(name: str) -> int | None:
        m = SHARD_RE.match(name)
        return int(m.group(2)) if m else None

    def check(k: int, path: Path) -> ShardInfo:
        if k >= plan.n_shards:
            raise ValueError("beyond the plan")
        return read_shard_index(path, k, plan, key_hash, manifest_ids)

    return finished_shards(shard_dir, parse, check, clean=clean)


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
                 t0: float | None = None, base: EmbeddingStore | None = None,
                 fingerprints: Sequence[str] | None = None) -> tuple[EmbeddingStore, dict[str, Any]]:
    """Check coverage and write the store: the rows of ``base`` (the store being extended, same
    key) but those of ``manifest_ids`` (the utterances of this work, embedded again), then the
    shards' rows in manifest order; one shard (or block of ``base`` rows) in memory at a time.
    ``fingerprints`` (aligned with ``manifest_ids``) are recorded per row and per drop; the
    drops of ``base`` are kept for the ids this work did not redo.

    Returns the store and the summary of this work (``extra`` added; wall time since ``t0``),
    which is also the store's ``meta["summary"]``."""
    n = plan.n
    check_coverage(manifest_ids, (p for i in infos.values() for p in (i.positions, i.dropped_positions)),
                   "utterances of the work")
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
    summary.embedded = len(positions)
    fps = None if fingerprints is None else [str(f) for f in fingerprints]
    kept, ids, row_fps, dropped = _kept_from_base(base, manifest_ids, dim)
    ids += manifest_ids[positions].tolist()
    if fps is not None:
        row_fps += [fps[p] for p in positions.tolist()]
    for p, r, path, msg, uid in drops:
        dropped[uid] = {"reason": r, "fingerprint": fps[p] if fps is not None else None,
                        **({"path": path, "message": msg} if r == "error" else {})}

    def rows():
        step = 1 << 16
        for s in range(0, len(kept), step):
            yield base.embeddings[kept[s:s + step]]  # type: ignore[union-attr]
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
    store = EmbeddingStore.write_chunks(store_path, ids, rows(), dim,
                                        {"key": key, "summary": summary_d, "dropped": dropped}, dtype=dtype,
                                        fingerprints=row_fps if fps is not None else None)
    return store, summary_d


def _kept_from_base(base: EmbeddingStore | None, redone: np.ndarray, dim: int
                    ) -> tuple[np.ndarray, list[str], list[str], dict[str, dict[str, Any]]]:
    """(rows, ids, fingerprints, drops) of ``base`` that stay: every one whose id is not ``redone``."""
    if base is None:
        return np.zeros(0, np.int64), [], [], {}
    if base.embeddings.shape[1] != dim:
        raise ExtractionIncomplete(f"{base.path}: rows of width {base.embeddings.shape[1]}, this encoder's are {dim}")
    again = set(redone.tolist())
    kept = np.array([r for r, i in enumerate(base.ids) if i not in again], np.int64)
    have = base.fingerprints()
    dropped = {i: rec for i, rec in (base.meta.get("dropped") or {}).items() if i not in again}
    return kept, [base.ids[r] for r in kept], [have[r] or "-" for r in kept], dropped
