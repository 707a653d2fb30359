"""DeepTalk training throughput on this machine: one optimiser step (forward, loss, backward,
clip, Adam) on P x K crops of 200 frames, for the reference batch (32 x 10) and the batch the
shipped checkpoint was trained with (16 x 6), both losses. Data loading is excluded (crops
come from a bank in memory in training too).

    python benchmarks/train_speed.py            # 5 timed steps per setting
    python benchmarks/train_speed.py --quick    # 2 timed steps, reference batch only
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import reference_step_config, write_results
from deeptalk_ser.training.losses import GE2ELoss, TripletLoss
from deeptalk_ser.training.module import SpeakerEncoderModule

SETTINGS = {"reference_32x10": (32, 10), "shipped_16x6": (16, 6)}


def time_steps(P: int, K: int, loss: str, steps: int, crop: int = 200) -> float:
    optimizer, grad_clip = reference_step_config()
    module = SpeakerEncoderModule(loss={"ge2e": GE2ELoss, "triplet": TripletLoss}[loss](), optimizer=optimizer,
                                  scheduler=None)
    opt = module.configure_optimizers()
    frames = torch.randn(P * K, crop, 160)
    labels = torch.arange(P).repeat_interleave(K)

    def step() -> None:
        opt.zero_grad()
        loss_v = module.compute_loss(module(frames), labels)
        loss_v.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    steps = 2 if args.quick else args.steps
    settings = {"reference_32x10": SETTINGS["reference_32x10"]} if args.quick else SETTINGS
    rows = {}
    for name, (P, K) in settings.items():
        for loss in ("ge2e", "triplet"):
            s = time_steps(P, K, loss, steps)
            rows[f"{name}_{loss}"] = {"P": P, "K": K, "crop_frames": 200, "loss": loss, "s_per_step": s,
                                      "utterances_per_s": P * K / s}
            print(f"{name:16s} {loss:8s} {s:7.3f} s/step  {P * K / s:7.1f} utt/s")
    write_results("train_speed.json", {"timed_steps": steps, "device": "cpu", "results": rows})


if __name__ == "__main__":
    main()
