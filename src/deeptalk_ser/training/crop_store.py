"""The streaming training store: the front end's output of every training utterance, on disk.

Why: pretraining at VoxCeleb scale (1.2M utterances, 3000 h) cannot decode every utterance at
set-up on every rank and keep it in RAM as overlapping float32 frames (~500 GB per rank). The
store is prepared once (in parallel processes, resumable, incremental) and then read through
memory maps, so a rank holds only the index (O(utterances), not O(audio)).

Layout (``docs/design/training_store.md`` has the full story)::

    <cache>/train_store/<data.name>/<frontend key>/
        .lock                      filelock: exactly one process prepares, the others wait
        shards/<shard key>.npy     int16 samples of the shard's utterances, concatenated
        shards/<shard key>.json    per-utterance ids, lengths, kept-frame counts, scales, skips
        index/<corpus key>/        speaker.npy shard.npy offset.npy length.npy n_kept.npy
                                   scale.npy ids.txt meta.json   (meta.json written last)

Content: the :class:`AudioFrontend` output (8 kHz after level normalisation and VAD) quantised
to int16 with a per-utterance scale (peak / 32767). Frames are z-scored per frame later, so only
the quantisation is lost (``tests/test_train_store.py`` measures it). Every crop equals
``random_crop(frame_signal(dequantised utterance), crop_frames, default_rng(crop_seed))``
exactly; it is read from the few thousand samples it needs, not from the whole utterance.
The lock, atomic shard files, the resume scan, the count check and the index folder renamed
into place are the mechanism shared with the embedding store (``utils/sharded.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import time
from collections import OrderedDict
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from deeptalk_ser.data.audio.framing import FRAME_HOP, FRAME_LENGTH, frame_mask, frame_signal, n_frames, random_crop
from deeptalk_ser.data.audio.frontend import AudioFrontend
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.training.augment import CropAugment
from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.utils.io import stable_hash, write_json_atomic
from deeptalk_ser.utils.processes import die_with_parent
from deeptalk_ser.utils.progress import progress
from deeptalk_ser.utils.sharded import (check_coverage, finished_shards, matching_json, replace_dir, write_shard_file,
                                        writer_lock)

log = logging.getLogger(__name__)

#: Bumped whenever the on-disk format or the quantisation changes (part of every key).
STORE_VERSION = 1
INT16_FULL = 32767
#: Shards hold about ``shard_size`` utterances; a forced boundary caps them at this many times.
MAX_SHARD_FACTOR = 4
NO_VOICE = "no voiced frame after VAD"
INDEX_ARRAYS = ("speaker", "shard", "offset", "length", "n_kept", "scale")


# ----------------------------------------------------------------------------- keys and plan


def frontend_key(frontend: AudioFrontend) -> str:
    """Everything that changes the stored samples besides the audio itself."""
    return stable_hash({"version": STORE_VERSION, "frontend": frontend.describe(), "dtype": "int16",
                        "scale": "peak/32767 per utterance"}, 16)


def _boundary_hash(utt_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(utt_id.encode(), digest_size=8).digest(), "little")


def plan_shards(utts: Sequence[Utterance], shard_size: int) -> list[list[Utterance]]:
    """Blocks of the id-sorted utterance list with content-defined boundaries.

    A new shard starts before every utterance whose id hashes to 0 modulo ``shard_size`` (so
    shards hold ``shard_size`` utterances on average), or when a shard reached
    ``MAX_SHARD_FACTOR * shard_size``. A boundary depends on the id alone, not on its position,
    so adding (or removing) utterances changes only the shards they fall into (and, rarely,
    forced boundaries up to the next hash boundary), not every shard after them.
    """
    if int(shard_size) != shard_size or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    cap = MAX_SHARD_FACTOR * shard_size
    shards: list[list[Utterance]] = []
    for u in sorted(utts, key=lambda u: u.id):
        if not shards or len(shards[-1]) >= cap or _boundary_hash(u.id) % shard_size == 0:
            shards.append([])
        shards[-1].append(u)
    return shards


def shard_listing(utts: Sequence[Utterance]) -> list[list[Any]]:
    """What a shard's content depends on: ids, paths and each file's fingerprint (prepare's content
    checksum, so opening a finished store stats no file; the stat without one)."""
    return [[u.id, str(u.path), u.fingerprint()] for u in utts]


def shard_key(utts: Sequence[Utterance], fe_key: str) -> str:
    return stable_hash({"frontend": fe_key, "utts": shard_listing(utts)}, 20)


# ----------------------------------------------------------------------------- quantisation


def quantise(wav: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """float32 waveform -> (int16 samples, float32 scale), ``wav ~= q * scale``."""
    peak = float(np.max(np.abs(wav))) if len(wav) else 0.0
    scale = np.float32(peak / INT16_FULL) if peak > 0 else np.float32(1.0)
    q = np.clip(np.round(wav / scale), -INT16_FULL, INT16_FULL).astype(np.int16)
    return q, scale


def dequantise(q: np.ndarray, scale: float) -> np.ndarray:
    """The waveform the store stands for (float32), bit for bit what every crop is framed from."""
    return np.asarray(q).astype(np.float32) * np.float32(scale)


# ----------------------------------------------------------------------------- preparation


def _save_npy_atomic(path: Path, arr: np.ndarray) -> None:
    write_shard_file(path, lambda f: np.save(f, arr, allow_pickle=False))


def _save_json_atomic(path: Path, obj: Any) -> None:
    write_shard_file(path, lambda f: f.write(json.dumps(obj).encode("utf-8")))


def build_shard(shard_dir: str, key: str, items: Sequence[tuple[str, str]], frontend: dict[str, Any],
                on_error: str) -> dict[str, Any]:
    """Worker: decode, condition and quantise one shard's utterances; write ``<key>.npy`` then
    ``<key>.json`` (each atomically; the json's presence marks the shard finished)."""
    from deeptalk_ser.data.audio.io import load_audio

    fe = AudioFrontend(**frontend)
    ids, lengths, kept, scales, parts, skipped = [], [], [], [], [], []
    for utt_id, path in items:
        try:
            wav, sr = load_audio(path)
        except DataError as exc:  # AudioError included: unreadable, empty, truncated, missing
            if on_error == "raise":
                raise
            skipped.append({"id": utt_id, "path": path, "reason": exc.problem, "kind": "unreadable"})
            continue
        q, scale = quantise(fe(wav, sr))
        _, keep, _ = frame_mask(dequantise(q, scale))
        if not keep.any():
            skipped.append({"id": utt_id, "path": path, "reason": NO_VOICE, "kind": "no_voice"})
            continue
        ids.append(utt_id)
        lengths.append(len(q))
        kept.append(int(keep.sum()))
        scales.append(float(scale))
        parts.append(q)
    shard_dir_p = Path(shard_dir)
    audio = np.concatenate(parts) if parts else np.zeros(0, np.int16)
    _save_npy_atomic(shard_dir_p / f"{key}.npy", audio)
    meta = {"version": STORE_VERSION, "key": key, "ids": ids, "length": lengths, "n_kept": kept,
            "scale": scales, "skipped": skipped, "n_items": len(items)}
    try:
        _save_json_atomic(shard_dir_p / f"{key}.json", meta)
    except OSError:  # e.g. a full disk: no samples without the json that marks them finished
        (shard_dir_p / f"{key}.npy").unlink(missing_ok=True)
        raise
    return meta


def finished_shard_metas(shard_dir: Path, keys: Sequence[str], clean: bool = False) -> dict[str, dict[str, Any]]:
    """The metadata of the finished shards among ``keys`` (:func:`finished_shards`: a shard whose
    ``<key>.json`` is unreadable, of another key or format, or whose samples are missing or of
    another length is left out, so it is built again). ``clean``: only the lock holder."""
    wanted = set(keys)

    def parse(name: str) -> str | None:
        key = name[:-len(".json")] if name.endswith(".json") else None
        return key if key in wanted else None

    def check(key: str, meta_p: Path) -> dict[str, Any]:
        meta = matching_json(meta_p, {"version": STORE_VERSION, "key": key})
        if meta is None:
            raise ValueError(f"not a shard of key {key} in format {STORE_VERSION}")
        n = np.load(meta_p.with_suffix(".npy"), mmap_mode="r").shape[0]
        if n != sum(meta["length"]) or len(meta["ids"]) != len(meta["length"]):
            raise ValueError(f"{n} samples, its utterances' lengths add up to {sum(meta['length'])}")
        return meta

    return finished_shards(shard_dir, parse, check, clean=clean)


@dataclass
class StoreReport:
    """What a prepare did (for logs and ``train_summary.json``)."""

    path: Path
    reused: bool  # the whole index was found finished: nothing was decoded
    n_utterances: int
    n_speakers: int
    shards_total: int
    shards_built: int
    shards_reused: int
    skipped: list[dict[str, str]] = field(default_factory=list)
    hours: float = 0.0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {"path": str(self.path), "reused": self.reused, "utterances": self.n_utterances,
                "speakers": self.n_speakers, "hours": round(self.hours, 4), "shards": self.shards_total,
                "shards_built": self.shards_built, "shards_reused": self.shards_reused,
                "n_skipped": len(self.skipped), "skipped": self.skipped, "prepare_s": round(self.seconds, 3)}


def prepare_store(utts: Sequence[Utterance], frontend: AudioFrontend, root: str | Path, *, shard_size: int = 1000,
                  num_workers: int = 1, on_error: str = "raise",
                  on_shard_done: Callable[[str], None] | None = None) -> StoreReport:
    """Build (or reuse) the store of ``utts`` under ``root`` (``.../train_store/<data.name>``);
    returns its report. Safe to call from every process at once: a file lock on the store
    directory lets one build while the others wait and then reuse.

    ``on_shard_done(key)`` is called in this process after every newly written shard (progress
    hooks, and the tests' simulated kill)."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if not utts:
        raise ValueError("no training utterances to put into the training store")
    t0 = time.perf_counter()
    fe_key = frontend_key(frontend)
    base = Path(root) / fe_key
    shard_dir = base / "shards"
    plan = plan_shards(utts, shard_size)
    keys = [shard_key(block, fe_key) for block in plan]
    corpus_key = stable_hash({"frontend": fe_key, "shards": keys, "speakers": [[u.id, u.speaker] for u in utts],
                              "on_error": on_error}, 16)
    index_dir = base / "index" / corpus_key
    if _index_complete(index_dir, shard_dir, keys):
        return _report_from_index(index_dir, reused=True, seconds=time.perf_counter() - t0)
    with writer_lock(base / ".lock", index_dir, "finished training store of these utterances"):
        if _index_complete(index_dir, shard_dir, keys):  # built by another process while we waited
            return _report_from_index(index_dir, reused=True, seconds=time.perf_counter() - t0)
        shard_dir.mkdir(parents=True, exist_ok=True)
        metas = finished_shard_metas(shard_dir, keys, clean=True)
        todo = [(k, block) for k, block in zip(keys, plan) if k not in metas]
        n_reused = len(metas)
        fe_params = frontend.describe()
        log.info("training store %s: %d shard(s), %d to build (%d utterances), %d reused", base, len(plan),
                 len(todo), sum(len(b) for _, b in todo), n_reused)
        with progress(total=sum(len(b) for _, b in todo), desc="training store", unit="utt") as bar:
            for meta in _run_shards(todo, str(shard_dir), fe_params, on_error, num_workers):
                metas[meta["key"]] = meta
                bar.update(meta["n_items"])
                if on_shard_done is not None:
                    on_shard_done(meta["key"])
        _write_index(index_dir, plan, keys, metas, utts, fe_params, fe_key, corpus_key, on_error, shard_size)
        rep = _report_from_index(index_dir, reused=False, seconds=time.perf_counter() - t0)
        rep.shards_built, rep.shards_reused = len(todo), n_reused
        return rep


def _index_complete(index_dir: Path, shard_dir: Path, keys: list[str]) -> bool:
    """A finished index whose shards are all still there (a deleted shard is rebuilt)."""
    return (index_dir / "meta.json").is_file() and all((shard_dir / f"{k}.npy").is_file() for k in keys)


def _run_shards(todo: list[tuple[str, list[Utterance]]], shard_dir: str, fe_params: dict[str, Any],
                on_error: str, num_workers: int):
    """Yield each shard's metadata as it finishes, in-process or in ``num_workers`` processes.
    On an exception (worker error, interrupt) shards not yet started are cancelled; shards in
    flight finish and stay valid on disk."""
    tasks = [(shard_dir, k, [(u.id, str(u.path)) for u in block], fe_params, on_error) for k, block in todo]
    if num_workers <= 1 or len(tasks) <= 1:
        for t in tasks:
            yield build_shard(*t)
        return
    # fork where available: spawn re-imports the training script (torch, Lightning) in every
    # worker, seconds each. The workers only run numpy / soxr / webrtcvad, never torch, so the
    # forked torch thread pools are never touched. The workers die with this process (a kill -9
    # would orphan them otherwise); this thread creates and shuts down the pool, so it outlives them.
    method = "fork" if "fork" in get_all_start_methods() else "spawn"
    pool = ProcessPoolExecutor(max_workers=min(num_workers, len(tasks)), mp_context=get_context(method),
                               initializer=die_with_parent)
    try:
        pending: set[Future] = set()
        it = iter(tasks)
        for t in it:  # keep at most 2 x workers queued so cancelling on an error is quick
            pending.add(pool.submit(build_shard, *t))
            if len(pending) >= 2 * num_workers:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                yield f.result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.add(pool.submit(build_shard, *nxt))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _write_index(index_dir: Path, plan: list[list[Utterance]], keys: list[str], metas: dict[str, dict[str, Any]],
                 utts: Sequence[Utterance], fe_params: dict[str, Any], fe_key: str, corpus_key: str, on_error: str,
                 shard_size: int) -> None:
    """Assemble the per-utterance index from the shards' metadata, each utterance kept or skipped
    in exactly one shard (:func:`check_coverage`); written into a temporary sibling folder and
    renamed (:func:`replace_dir`), so a reader sees a finished index or none."""
    by_id = {u.id: u for u in utts}
    names = [u.id for block in plan for u in block]
    pos = {uid: i for i, uid in enumerate(names)}
    accounted = ([pos[uid] for uid in metas[k]["ids"] + [sk["id"] for sk in metas[k]["skipped"]]] for k in keys)
    check_coverage(np.array(names, dtype=str), accounted, "training utterances")
    skipped: list[dict[str, str]] = []
    rows: list[tuple[str, str, int, int, int, int, float]] = []
    for s, k in enumerate(keys):
        m = metas[k]
        for sk in m["skipped"]:
            if sk["kind"] == "unreadable" and on_error == "raise":  # a shard built with skip, reused with raise
                raise DataError(sk["path"], sk["reason"])
            skipped.append({"id": sk["id"], "reason": sk["reason"]})
        offset = 0
        for uid, length, kept, scale in zip(m["ids"], m["length"], m["n_kept"], m["scale"]):
            rows.append((uid, by_id[uid].speaker, s, offset, length, kept, scale))
            offset += length
    if not rows:
        raise DataError(index_dir, f"no usable training utterance: all {len(utts)} were skipped "
                                   f"(e.g. {skipped[:3]})")
    speakers = sorted({r[1] for r in rows})
    spk_idx = {s: i for i, s in enumerate(speakers)}
    arrays = {"speaker": np.array([spk_idx[r[1]] for r in rows], np.int32),
              "shard": np.array([r[2] for r in rows], np.int32),
              "offset": np.array([r[3] for r in rows], np.int64),
              "length": np.array([r[4] for r in rows], np.int64),
              "n_kept": np.array([r[5] for r in rows], np.int32),
              "scale": np.array([r[6] for r in rows], np.float32)}
    total = int(arrays["length"].sum())
    meta = {"version": STORE_VERSION, "key": {"frontend": fe_key, "corpus": corpus_key}, "frontend": fe_params,
            "sample_rate": fe_params["sample_rate"], "on_error": on_error, "shard_size": shard_size,
            "shards": keys, "speakers": speakers, "n_utterances": len(rows), "n_speakers": len(speakers),
            "n_samples": total, "hours": total / fe_params["sample_rate"] / 3600,
            "n_skipped": len(skipped), "skipped": skipped}
    if skipped:
        log.warning("training store: skipped %d utterance(s), e.g. %s", len(skipped), skipped[:3])
    with replace_dir(index_dir, "finished training store of these utterances") as tmp:
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
        (tmp / "ids.txt").write_text("".join(r[0] + "\n" for r in rows), encoding="utf-8")
        write_json_atomic(tmp / "meta.json", meta)


def _report_from_index(index_dir: Path, reused: bool, seconds: float) -> StoreReport:
    meta = read_index_meta(index_dir)
    n = len(meta["shards"])
    return StoreReport(path=index_dir, reused=reused, n_utterances=meta["n_utterances"],
                       n_speakers=meta["n_speakers"], shards_total=n, shards_built=0,
                       shards_reused=n if reused else 0, skipped=meta["skipped"], hours=meta["hours"], seconds=seconds)


def read_index_meta(index_dir: str | Path) -> dict[str, Any]:
    p = Path(index_dir) / "meta.json"
    if not p.is_file():
        raise DataError(p, "training store index not found or unfinished (prepare it: python train.py prepare_only=true)")
    meta = json.loads(p.read_text())
    if meta.get("version") != STORE_VERSION:
        raise DataError(p, f"training store format {meta.get('version')} is not {STORE_VERSION}: prepare it again")
    return meta


# ----------------------------------------------------------------------------- reading


class CropStore:
    """Read side: the index (memory-mapped .npy) and the shards (memory-mapped, opened lazily,
    at most ``max_open`` at a time). Pickles as its path only, so DataLoader workers and DDP
    ranks re-open the maps (shared page cache) instead of copying anything.

    Pages of a memory map that were read count as the process's RSS until unmapped, so after
    every ``release_every`` reads the open maps are told ``MADV_DONTNEED`` (the data stays in
    the page cache; a later read maps it again): RSS stays bounded over an epoch of random crops
    instead of growing towards the store's size. Counted in reads, not bytes: with large
    page-cache folios (ext4, Linux >= 6.x) one fault maps up to 2 MB around a 30 KB crop, so
    resident shard pages peak near ``release_every`` x 2 MB. Shard maps are also marked
    ``MADV_RANDOM``: a crop needs tens of KB, read-ahead would fetch more from a cold disk."""

    def __init__(self, index_dir: str | Path, max_open: int = 64, release_every: int = 32) -> None:
        self.index_dir = Path(index_dir)
        self.max_open, self.release_every = max_open, release_every
        self._reads = 0
        self.meta = read_index_meta(self.index_dir)
        self.shard_dir = self.index_dir.parent.parent / "shards"
        self.speakers: list[str] = list(self.meta["speakers"])
        self._arrays: dict[str, np.ndarray] = {}
        self._open: OrderedDict[int, np.ndarray] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {"index_dir": str(self.index_dir), "max_open": self.max_open, "release_every": self.release_every}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["index_dir"], state["max_open"], state["release_every"])  # type: ignore[misc]

    def __len__(self) -> int:
        return int(self.meta["n_utterances"])

    def array(self, name: str) -> np.ndarray:
        """One index column (memory-mapped, read-only)."""
        if name not in self._arrays:
            p = self.index_dir / f"{name}.npy"
            try:
                self._arrays[name] = np.load(p, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DataError(p, f"unreadable training store index ({exc})") from exc
        return self._arrays[name]

    @property
    def labels(self) -> np.ndarray:
        return self.array("speaker")

    def ids(self) -> list[str]:
        return (self.index_dir / "ids.txt").read_text().splitlines()

    def _shard(self, s: int) -> np.ndarray:
        mm = self._open.get(s)
        if mm is None:
            p = self.shard_dir / f"{self.meta['shards'][s]}.npy"
            try:
                mm = np.load(p, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DataError(p, f"unreadable training store shard ({exc})") from exc
            raw = getattr(mm, "_mmap", None)
            if raw is not None and hasattr(mmap, "MADV_RANDOM"):
                raw.madvise(mmap.MADV_RANDOM)  # crops are random reads: no read-ahead around each
            self._open[s] = mm
            if len(self._open) > self.max_open:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(s)
        return mm

    def samples(self, i: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Dequantised float32 samples ``[start, stop)`` of utterance ``i`` (only those are read)."""
        length = int(self.array("length")[i])
        stop = length if stop is None else min(stop, length)
        off = int(self.array("offset")[i])
        q = self._shard(int(self.array("shard")[i]))[off + start:off + stop]
        out = dequantise(q, float(self.array("scale")[i]))  # a copy: the map's pages may go
        self._reads += 1
        if self._reads >= self.release_every:
            self.release()
        return out

    def release(self) -> None:
        """Drop the pages of every open shard map from this process's RSS (not from the cache)."""
        self._reads = 0
        for mm in self._open.values():
            raw = getattr(mm, "_mmap", None)  # numpy.memmap keeps its mmap.mmap here
            if raw is not None and hasattr(mmap, "MADV_DONTNEED"):
                raw.madvise(mmap.MADV_DONTNEED)

    def frames(self, i: int) -> np.ndarray:
        """All (T, 160) z-scored frames of utterance ``i`` (tests, short utterances)."""
        return frame_signal(self.samples(i))

    def crop(self, i: int, n: int, rng: np.random.Generator, augment: CropAugment | None = None) -> np.ndarray:
        """``random_crop(self.frames(i), n, rng)[0]``, reading only the samples it needs when the
        utterance is long enough and had no dropped frame (the common case). With an active
        ``augment`` the crop is cut from the samples instead (see :meth:`augmented_crop`)."""
        if augment is not None and augment.active:
            return self.augmented_crop(i, n, rng, augment)
        t = int(self.array("n_kept")[i])
        if t < n or t != n_frames(int(self.array("length")[i])):
            return random_crop(self.frames(i), n, rng)[0]
        start = 0 if t == n else int(rng.integers(0, t - n))
        seg = self.samples(i, start * FRAME_HOP, (start + n - 1) * FRAME_HOP + FRAME_LENGTH)
        return frame_signal(seg)


    def augmented_crop(self, i: int, n: int, rng: np.random.Generator, augment: CropAugment) -> np.ndarray:
        """``n`` frames framed from perturbed samples: the ``n`` frames' span times the speed
        factor is read (the waveform tiled when shorter, like the reference tiles frames), then
        speed, gain, noise; frames the framing drops are refilled by tiling the rest."""
        speed = augment.draw_speed(rng)
        span = (n - 1) * FRAME_HOP + FRAME_LENGTH
        need = int(np.ceil(span * speed)) + 1
        length = int(self.array("length")[i])
        if length >= need:
            start = int(rng.integers(0, length - need + 1))
            seg = self.samples(i, start, start + need)
        else:
            wav = self.samples(i)
            seg = np.tile(wav, int(np.ceil(need / max(len(wav), 1))) + 1)
            start = int(rng.integers(0, len(seg) - need + 1))
            seg = seg[start:start + need]
        frames = frame_signal(augment.perturb(seg, speed, rng)[:span])
        if len(frames) >= n:
            return frames[:n]
        return random_crop(frames, n, rng)[0]


def open_store(index_dir: str | Path) -> CropStore:
    return CropStore(index_dir)
