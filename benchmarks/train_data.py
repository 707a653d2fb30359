"""Training data path: the streaming training store against the old in-memory FrameBank, in one run.

Measured (CPU, threads as recorded in the JSON):

* ``prepare``: one-time store preparation of a synthetic VoxCeleb-layout corpus (16 kHz WAV,
  1-2 s of speech-like audio) with 1 and 2 processes: files/s and audio-hours/s;
* ``crops``: crops/s delivered by the DataLoader (P x K = 32 x 10 crops of 200 frames) with 0, 1
  and 2 workers, store vs in-memory baseline, on that corpus;
* ``setup``: training set-up time and peak RSS of the in-memory baseline vs opening the store;
* ``scale``: synthetic stores of 10,000 and 100,000 utterances (written directly as int16 shards:
  decoding 100k files would take longer than the whole benchmark on 2 cores); each is opened by
  a fresh subprocess through ``SpeakerDataModule`` (index assembly on first open, then reuse),
  which iterates 50 batches; its peak RSS must stay flat (within 1.5x) from 10k to 100k;
* ``train``: training throughput (utterances/s) of ``SpeakerEncoderModule`` (GE2E) at the
  reference batch 32 x 10, fed from the store.

    python benchmarks/train_data.py            # the full run (< 15 min on 2 cores)
    python benchmarks/train_data.py --quick    # smaller corpora, for a smoke test
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy / torch start their thread pools

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from _common import reference_step_config, write_results
from deeptalk_ser.data.audio.framing import frame_signal, n_frames, random_crop
from deeptalk_ser.data.audio.frontend import AudioFrontend
from deeptalk_ser.data.audio.io import load_audio
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.embedding.encoders.deeptalk import deeptalk_frontend
from deeptalk_ser.training.crop_store import (STORE_VERSION, CropStore, frontend_key, plan_shards, prepare_store,
                                              shard_key)
from deeptalk_ser.training.data import StoreCropDataset
from deeptalk_ser.training.sampler import SpeakerBatchSampler
from deeptalk_ser.utils.errors import AudioError
from deeptalk_ser.utils.io import write_json_atomic
from _common import speech_like

P, K, CROP = 32, 10, 200


# ----------------------------------------------------------------------------- baseline
# BASELINE: a copy of the old in-memory path (training/data.py before the training store):
# every utterance decoded at set-up, single-threaded, kept in RAM as float32 frames.


@dataclass
class FrameBank:
    """BASELINE (old code): framed utterances held in memory."""

    utts: list[Utterance]
    frames: list[np.ndarray]
    skipped: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def build(cls, utts: Sequence[Utterance], frontend: AudioFrontend, on_error: str = "raise") -> "FrameBank":
        kept, frames, skipped = [], [], []
        for u in utts:
            try:
                wav, sr = load_audio(u.path)
                f = frame_signal(frontend(wav, sr))
            except AudioError as exc:
                if on_error == "raise":
                    raise
                skipped.append({"id": u.id, "reason": exc.problem})
                continue
            if len(f) == 0:
                skipped.append({"id": u.id, "reason": "no voiced frame after VAD"})
                continue
            kept.append(u)
            frames.append(f)
        return cls(kept, frames, skipped)


class BankCropDataset(Dataset):
    """BASELINE: (index, crop seed) -> crop from the in-memory bank (same crop rule as the store)."""

    def __init__(self, bank: FrameBank, labels: np.ndarray) -> None:
        self.bank, self.labels = bank, labels

    def __len__(self) -> int:
        return len(self.bank.frames)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        i, seed = item
        crop, _ = random_crop(self.bank.frames[i], CROP, np.random.default_rng(seed))
        return torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32)), int(self.labels[i])


# ----------------------------------------------------------------------------- corpora


def n_speakers_for(n: int) -> int:
    return max(40, n // 100)


def voxceleb_id(s: int, u: int) -> tuple[str, str]:
    spk = f"id{10000 + s:05d}"
    return spk, f"{spk}/vid{u // 8:05d}/{u % 8 + 1:05d}"


def write_corpus(root: Path, n: int) -> tuple[list[Utterance], float]:
    """n WAV files (16 kHz, 1-2 s) in VoxCeleb layout ``wav/idNNNNN/<video>/NNNNN.wav``."""
    rng = np.random.default_rng(0)
    n_spk = n_speakers_for(n)
    utts, seconds = [], 0.0
    for j in range(n):
        s, u = j % n_spk, j // n_spk
        spk, uid = voxceleb_id(s, u)
        path = root / "wav" / f"{uid}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        dur = 1.0 + rng.random()
        sf.write(str(path), speech_like(dur, 16000, 90.0 + 3 * (s % 60)), 16000, subtype="PCM_16")
        seconds += dur
        utts.append(Utterance(id=uid, path=str(path), speaker=spk, split="train"))
    return utts, seconds


def synth_listing(n: int) -> list[Utterance]:
    """The manifest of a synthetic n-utterance corpus whose audio exists only in the store."""
    n_spk = n_speakers_for(n)
    utts = []
    for j in range(n):
        spk, uid = voxceleb_id(j % n_spk, j // n_spk)
        utts.append(Utterance(id=uid, path=f"/synthetic/voxceleb/wav/{uid}.wav", speaker=spk, split="train"))
    return utts


def write_synth_shards(root: Path, n: int, shard_size: int = 1000) -> float:
    """Write the store's shards directly (int16 noise, 1-2 s at 8 kHz, as prepare would lay them
    out); ``prepare_store`` then finds every shard finished and only assembles the index."""
    fe = deeptalk_frontend()
    shard_dir = root / frontend_key(fe) / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    total = 0
    for block in plan_shards(synth_listing(n), shard_size):
        key = shard_key(block, frontend_key(fe))
        lengths = rng.integers(8000, 16000, size=len(block))
        audio = rng.integers(-8000, 8000, size=int(lengths.sum()), dtype=np.int16)
        total += int(lengths.sum())
        with open(shard_dir / f"{key}.npy", "wb") as fh:
            np.save(fh, audio)
        write_json_atomic(shard_dir / f"{key}.json", {
            "version": STORE_VERSION, "key": key, "ids": [u.id for u in block], "length": lengths.tolist(),
            "n_kept": [n_frames(int(x)) for x in lengths], "scale": [1.0 / 32767] * len(block), "skipped": [],
            "n_items": len(block)})
    return total / 8000 / 3600


# ----------------------------------------------------------------------------- measurements


def rss_mb(field_name: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """This process's peak RSS (``VmHWM``). Not ``ru_maxrss``: Linux carries the forked parent's
    peak across ``execve`` into it, so a small child of a big parent would report the parent."""
    return rss_mb("VmHWM")


def crops_per_s(dataset: Dataset, labels: np.ndarray, workers: int, n_batches: int) -> float:
    """Steady-state crops/s: the first batch (worker start-up, first maps) is not timed."""
    sampler = SpeakerBatchSampler(labels, P, K, num_batches=n_batches + 1, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                        prefetch_factor=4 if workers else None)
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    n = sum(len(y) for _, y in it)
    return n / (time.perf_counter() - t0)


def run_step(*args: str) -> dict[str, Any]:
    """One measurement in a fresh subprocess (its own peak RSS); the last stdout line is JSON."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"]}
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).parent)
    if proc.returncode != 0:
        raise RuntimeError(f"step {args} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def step_scale(root: str, n: int, batches: int) -> dict[str, Any]:
    """Fresh process: manifest -> SpeakerDataModule (store built or reused) -> ``batches`` batches."""
    from deeptalk_ser.training.data import SpeakerDataModule

    torch.set_num_threads(1)
    rss0 = rss_mb()
    utts = synth_listing(n)
    t0 = time.perf_counter()
    dm = SpeakerDataModule(utts, deeptalk_frontend(), speakers_per_batch=P, utterances_per_speaker=K, crop_frames=CROP,
                           batches_per_epoch=max(batches, 1), val_speakers=0, store_dir=root, seed=0, num_workers=0,
                           pin_memory=False, persistent_workers=False, prefetch_factor=None, on_error="raise",
                           shard_size=1000, prepare_workers=1, augment=None, rank=0, world_size=1)
    dm.setup("fit")
    setup_s = time.perf_counter() - t0
    loader = dm.train_dataloader()
    t1 = time.perf_counter()
    got = 0
    for i, (x, _) in enumerate(loader if batches else []):
        got += len(x)
        if i + 1 >= batches:
            break
    iter_s = time.perf_counter() - t1
    return {"utterances": n, "speakers": dm.report.n_speakers, "store_reused": dm.report.reused,
            "setup_s": setup_s, "batches": batches, "crops": got, "crops_per_s": got / iter_s if got else None,
            "rss_before_mb": rss0, "peak_rss_mb": peak_rss_mb(), "rss_anon_end_mb": rss_mb("RssAnon"),
            "rss_file_end_mb": rss_mb("RssFile")}


def step_baseline_setup(corpus_json: str) -> dict[str, Any]:
    """Fresh process: the old set-up (decode + frame everything into RAM)."""
    torch.set_num_threads(1)
    utts = [Utterance(**u) for u in json.loads(Path(corpus_json).read_text())]
    rss0 = rss_mb()
    t0 = time.perf_counter()
    bank = FrameBank.build(utts, deeptalk_frontend())
    setup_s = time.perf_counter() - t0
    frame_mb = sum(f.nbytes for f in bank.frames) / 2**20
    return {"utterances": len(bank.utts), "setup_s": setup_s, "frames_mb": frame_mb, "rss_before_mb": rss0,
            "peak_rss_mb": peak_rss_mb()}


def step_store_setup(corpus_json: str, root: str) -> dict[str, Any]:
    """Fresh process: open the (prepared) store of the same corpus."""
    torch.set_num_threads(1)
    utts = [Utterance(**u) for u in json.loads(Path(corpus_json).read_text())]
    rss0 = rss_mb()
    t0 = time.perf_counter()
    rep = prepare_store(utts, deeptalk_frontend(), root, shard_size=100)
    store = CropStore(rep.path)
    SpeakerBatchSampler(np.asarray(store.labels), P, K, num_batches=100, seed=0)
    return {"utterances": len(store), "store_reused": rep.reused, "setup_s": time.perf_counter() - t0,
            "rss_before_mb": rss0, "peak_rss_mb": peak_rss_mb()}


def train_throughput(store: CropStore, steps: int) -> dict[str, Any]:
    from deeptalk_ser.training.losses import GE2ELoss
    from deeptalk_ser.training.module import SpeakerEncoderModule

    optimizer, grad_clip = reference_step_config()
    module = SpeakerEncoderModule(loss=GE2ELoss(), optimizer=optimizer, scheduler=None)
    opt = module.configure_optimizers()
    sampler = SpeakerBatchSampler(np.asarray(store.labels), P, K, num_batches=steps + 1, seed=0)
    loader = DataLoader(StoreCropDataset(store, CROP), batch_sampler=sampler, num_workers=1, prefetch_factor=2)
    times = []
    t_prev = time.perf_counter()
    for frames, labels in loader:  # data wait included: the loader worker runs alongside the step
        opt.zero_grad()
        loss = module.compute_loss(module(frames), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
        opt.step()
        now = time.perf_counter()
        times.append(now - t_prev)
        t_prev = now
    s = float(np.mean(times[1:]))  # the first step (warm-up, worker start) is not timed
    return {"P": P, "K": K, "crop_frames": CROP, "loss": "ge2e", "timed_steps": steps, "s_per_step": s,
            "utterances_per_s": P * K / s, "data": "training store, DataLoader num_workers=1"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--step", choices=["scale", "baseline_setup", "store_setup"])
    ap.add_argument("--root")
    ap.add_argument("--corpus")
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--batches", type=int, default=50)
    args = ap.parse_args()
    if args.step == "scale":
        print(json.dumps(step_scale(args.root, args.n, args.batches)))
        return
    if args.step == "baseline_setup":
        print(json.dumps(step_baseline_setup(args.corpus)))
        return
    if args.step == "store_setup":
        print(json.dumps(step_store_setup(args.corpus, args.root)))
        return

    torch.set_num_threads(1)
    n_files = 300 if args.quick else 2000
    scales = (2000, 10000) if args.quick else (10000, 100000)
    crop_batches = 3 if args.quick else 8
    work = Path(tempfile.mkdtemp(prefix="train_data_bench_"))
    out: dict[str, Any] = {"threads": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                                       "torch_num_threads": torch.get_num_threads(),
                                       "prepare_processes": "1 and 2 (fork)", "dataloader_workers": "0, 1, 2"},
                           "batch": {"P": P, "K": K, "crop_frames": CROP}}
    try:
        t0 = time.perf_counter()
        utts, seconds = write_corpus(work / "corpus", n_files)
        corpus_json = work / "corpus.json"
        corpus_json.write_text(json.dumps([{"id": u.id, "path": u.path, "speaker": u.speaker} for u in utts]))
        print(f"corpus: {n_files} files, {seconds / 3600:.3f} h, written in {time.perf_counter() - t0:.1f} s")

        fe = deeptalk_frontend()
        prep = {"files": n_files, "audio_hours": seconds / 3600}
        for workers in (1, 2):
            root = work / f"store_w{workers}"
            t0 = time.perf_counter()
            rep = prepare_store(utts, fe, root, shard_size=100, num_workers=workers)
            dt = time.perf_counter() - t0
            prep[f"processes_{workers}"] = {"seconds": dt, "files_per_s": n_files / dt,
                                            "audio_hours_per_s": seconds / 3600 / dt, "shards": rep.shards_total}
            print(f"prepare, {workers} process(es): {dt:.1f} s, {n_files / dt:.0f} files/s")
        out["prepare"] = prep
        store = CropStore(rep.path)
        store_root = work / "store_w2"

        out["setup"] = {"in_memory": run_step("--step", "baseline_setup", "--corpus", str(corpus_json)),
                        "store_open": run_step("--step", "store_setup", "--corpus", str(corpus_json),
                                               "--root", str(store_root)),
                        "files": n_files}
        print("setup:", json.dumps(out["setup"]))

        bank = FrameBank.build(utts, fe)
        by_id = {u.id: i for i, u in enumerate(bank.utts)}
        speakers = sorted({u.speaker for u in bank.utts})
        bank_labels = np.array([speakers.index(u.speaker) for u in bank.utts])
        # same utterance order as the store so both deliver the same crops (up to quantisation)
        order = [by_id[i] for i in store.ids()]
        bank = FrameBank([bank.utts[j] for j in order], [bank.frames[j] for j in order])
        bank_labels = bank_labels[order]
        crops: dict[str, Any] = {"batches_timed": crop_batches}
        for workers in (0, 1, 2):
            st = crops_per_s(StoreCropDataset(store, CROP), np.asarray(store.labels), workers, crop_batches)
            mem = crops_per_s(BankCropDataset(bank, bank_labels), bank_labels, workers, crop_batches)
            crops[f"workers_{workers}"] = {"store_crops_per_s": st, "in_memory_crops_per_s": mem}
            print(f"crops/s, {workers} worker(s): store {st:.0f}, in-memory {mem:.0f}")
        out["crops"] = crops
        del bank

        scale: dict[str, Any] = {}
        for n in scales:
            root = work / f"synth_{n}"
            t0 = time.perf_counter()
            hours = write_synth_shards(root, n)
            gen_s = time.perf_counter() - t0
            first = run_step("--step", "scale", "--root", str(root), "--n", str(n), "--batches", "0")
            reuse = run_step("--step", "scale", "--root", str(root), "--n", str(n), "--batches", "50")
            scale[str(n)] = {"audio_hours": hours, "shards_written_s": gen_s, "index_build": first, **reuse}
            print(f"scale {n}: setup {reuse['setup_s']:.2f} s (index build {first['setup_s']:.2f} s), "
                  f"peak RSS {reuse['peak_rss_mb']:.0f} MB")
            shutil.rmtree(root)
        a, b = (scale[str(n)]["peak_rss_mb"] for n in scales)
        scale["peak_rss_ratio"] = b / a
        scale["flat_within_1_5x"] = b / a <= 1.5
        out["scale"] = scale

        out["train"] = train_throughput(store, steps=1 if args.quick else 2)
        print(f"train: {out['train']['utterances_per_s']:.1f} utterances/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_results("train_data_quick.json" if args.quick else "train_data.json", out)


if __name__ == "__main__":
    main()
