"""Cost of on-the-fly crop augmentation (training/augment.py) against clean crops, same run.

A training store of real speechocean762 `train/` audio (or generated speech when the shared data
is absent) is built once; then 200-frame crops are cut with no augmentation, each perturbation
alone, and the `experiment=speaker_recipe` mix, single-threaded, in the main process, after a
warm-up pass, best of ``--repeats`` passes each.

    python benchmarks/augment_speed.py [--crops 2000]   -> benchmarks/results/augment_speed.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from _common import SHARED_DATA, write_results
from _common import speech_like
from deeptalk_ser.data.corpora._common import resolve_in_root
from deeptalk_ser.data.corpora.kaldi import KaldiCorpus
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.embedding.encoders.deeptalk import deeptalk_frontend
from deeptalk_ser.training.augment import CropAugment
from deeptalk_ser.training.crop_store import CropStore, prepare_store

SETTINGS = {
    "clean (baseline)": CropAugment(),
    "noise always (generated, 5-20 dB)": CropAugment(noise_prob=1.0),
    "speed always (0.9 / 1.1)": CropAugment(speed_prob=1.0),
    "speaker_recipe mix (noise 0.5, speed 0.3)": CropAugment(noise_prob=0.5, speed_prob=0.3),
}


def utterances(tmp: Path, n: int) -> tuple[list[Utterance], str]:
    root = SHARED_DATA / "speechocean762"
    if (root / "train" / "wav.scp").is_file():
        utts = KaldiCorpus(root, subsets=["train"]).scan()[:n]  # wav.scp paths are relative to the root
        return [replace(u, path=str(resolve_in_root(root, u.path))) for u in utts], "speechocean762 train/"
    utts = []
    for k in range(n):
        p = tmp / f"u{k}.wav"
        sf.write(p, speech_like(3.0, 8000, 90.0 + k % 40), 8000)
        utts.append(Utterance(id=f"u{k}", path=str(p), speaker=f"s{k % 20}"))
    return utts, "generated speech_like, 3 s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crops", type=int, default=2000)
    ap.add_argument("--utterances", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3, help="best of this many passes per setting")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        utts, source = utterances(Path(tmp), args.utterances)
        store = CropStore(prepare_store(utts, deeptalk_frontend(), Path(tmp) / "store", shard_size=100).path)
        items = np.random.default_rng(0).integers(0, len(store), args.crops)

        def rate(aug: CropAugment) -> float:
            t0 = time.perf_counter()
            for k, i in enumerate(items):
                store.crop(int(i), 200, np.random.default_rng(k), aug)
            return args.crops / (time.perf_counter() - t0)

        rate(CropAugment())  # warm-up: page cache and first-call costs would otherwise land on the baseline
        rows = {name: round(max(rate(aug) for _ in range(args.repeats)), 1) for name, aug in SETTINGS.items()}
    base = rows["clean (baseline)"]
    results = {"source": source, "crop_frames": 200, "crops": args.crops, "threads": 1, "best_of": args.repeats, "crops_per_s": rows,
               "slowdown_vs_clean": {k: round(base / v, 2) for k, v in rows.items()}}
    for k, v in rows.items():
        print(f"{k:45s} {v:8.1f} crops/s  x{base / v:.2f}")
    write_results("augment_speed.json", results)


if __name__ == "__main__":
    main()
