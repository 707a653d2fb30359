"""DeepTalk training throughput on this machine: one optimiser step (forward, loss, backward,
clip, Adam) on P x K crops of 200 frames, for the batch the shipped checkpoint was trained with
(16 x 6) and the reference batch (32 x 10). Data loading is excluded (crops come from a bank in
memory in training too).

The reference DeepVOX formulation (``deeptalk.DeepVOX``, the definition) and the fast one
(``deepvox_fast.FastDeepVOX``, the training default) run side by side in this process, on the
same weights and crops, alternating, ``--repeats`` times: the script first asserts equal
embeddings (``torch.testing.assert_close``, rtol 1e-4, atol 1e-5) and equal gradients of every
parameter for a fixed linear probe of the embeddings (max abs difference <= 5e-3 x the
parameter's max abs gradient, floored at 1 % of the largest gradient; see :func:`check_equal`),
then times both. FLOPs per step come from torch's flop counter and the
machine's float32 matmul peak is measured in the same run with the same threads, giving
``gflop_per_s`` and ``fraction_of_peak``. The ``tried`` table times DeepVOX alone (forward +
backward, shipped batch) in every formulation tried, including those that did not pay.

    python benchmarks/train_speed.py            # both batches, both losses, tried table
    python benchmarks/train_speed.py --quick    # shipped batch, GE2E, 1 step x 2 repeats
    python benchmarks/train_speed.py --quick --tried --no-compile   # + the tried table, uncompiled
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Callable

import torch
import torch.nn.functional as F

from _common import achieved, count_flops, matmul_peak, optimizer_step, write_results
from deeptalk_ser.embedding.encoders.deeptalk import DeepVOX
from deeptalk_ser.embedding.encoders.deepvox_fast import use_deepvox
from deeptalk_ser.training.losses import GE2ELoss, TripletLoss
from deeptalk_ser.training.module import SpeakerEncoderModule

SETTINGS = {"shipped_16x6": (16, 6), "reference_32x10": (32, 10)}
CROP = 200
RTOL, ATOL = 1e-4, 1e-5  # embeddings, elementwise
GRAD_RTOL = 5e-3  # gradients: max abs difference per parameter <= GRAD_RTOL x its max abs gradient ...
GRAD_FLOOR = 1e-2  # ... or x 1 % of the largest gradient of any parameter, whichever is larger


def _probe_grads(module: SpeakerEncoderModule, frames: torch.Tensor, probe: torch.Tensor) -> tuple[torch.Tensor, dict]:
    module.zero_grad()
    emb = module(frames)
    (emb @ probe.to(emb.dtype)).sum().backward()
    return emb.detach(), {n: p.grad.detach().double() for n, p in module.named_parameters() if p.grad is not None}


def check_equal(ref: SpeakerEncoderModule, fast: SpeakerEncoderModule, frames: torch.Tensor,
                labels: torch.Tensor) -> dict[str, float]:
    """Embeddings, loss, and every parameter's gradient of a fixed linear probe of the embeddings
    agree (raises if not).

    The probe, not the loss, is differentiated: batch-hard triplet mining picks an argmax, so a
    1e-7 change of an embedding can flip the chosen negative and the loss's gradient with it
    (seen at 32 x 10 with random weights), whatever the formulation. A gradient's difference is
    judged against the parameter's largest gradient (floored at ``GRAD_FLOOR`` of the largest
    anywhere: conv biases before BatchNorm have an exact gradient of zero, so theirs is rounding
    noise). The first DeepVOX weight's gradient sums ~10^7 terms with cancellation: two fp32
    summation orders differed by 1.8e-3 of its size at 32 x 10 (2.6e-5 at 16 x 6), hence
    ``GRAD_RTOL``. (A float64 arbiter is not possible as is: the GRU runs in fp32 by design.)"""
    probe = torch.randn(256, generator=torch.Generator().manual_seed(2))
    emb_ref, g_ref = _probe_grads(ref, frames, probe)
    emb_fast, g_fast = _probe_grads(fast, frames, probe)
    with torch.no_grad():
        out = {"loss_reference": float(ref.compute_loss(emb_ref, labels)),
               "loss_fast": float(fast.compute_loss(emb_fast, labels))}
    torch.testing.assert_close(emb_fast, emb_ref, rtol=RTOL, atol=ATOL)
    out["max_abs_diff_embedding"] = float((emb_fast - emb_ref).abs().max())
    assert g_ref.keys() == g_fast.keys(), "different parameters received gradients"
    largest = max(float(g.abs().max()) for g in g_ref.values())
    worst, worst_name = 0.0, ""
    for name, g in g_ref.items():
        scale = max(float(g.abs().max()), GRAD_FLOOR * largest)
        diff = float((g_fast[name] - g).abs().max())
        if diff > GRAD_RTOL * scale:
            raise AssertionError(f"gradient of {name}: max abs diff {diff:.3e} > {GRAD_RTOL} x {scale:.3e}")
        if diff / scale > worst:
            worst, worst_name = diff / scale, name
    out["gradient_max_diff_over_scale"] = {"value": worst, "parameter": worst_name}
    return out


def time_call(fn: Callable[[], None], steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def compare(P: int, K: int, loss: str, steps: int, repeats: int) -> dict:
    """Reference vs fast DeepVOX in the full optimiser step: equality first, then interleaved timing."""
    loss_cls = {"ge2e": GE2ELoss, "triplet": TripletLoss}[loss]
    ref = SpeakerEncoderModule(loss=loss_cls(), optimizer=None, scheduler=None, deepvox="reference")
    fast = copy.deepcopy(ref)
    fast.net = use_deepvox(fast.net, "fast")
    gen = torch.Generator().manual_seed(0)
    frames = torch.randn(P * K, CROP, 160, generator=gen)
    labels = torch.arange(P).repeat_interleave(K)
    row: dict = {"P": P, "K": K, "crop_frames": CROP, "loss": loss, "timed_steps": steps, "repeats": repeats,
                 **check_equal(ref, fast, frames, labels), "tolerance": {"embedding_rtol": RTOL, "embedding_atol": ATOL,
                                                           "gradient_max_diff_over_max_abs": GRAD_RTOL,
                                                           "gradient_scale_floor_of_largest": GRAD_FLOOR}}
    steps_fn = {"reference": optimizer_step(ref, frames, labels), "fast": optimizer_step(fast, frames, labels)}
    row["flops_per_step"] = count_flops(steps_fn["reference"])  # also the warm-up
    steps_fn["fast"]()
    seconds: dict[str, list[float]] = {"reference": [], "fast": []}
    for _ in range(repeats):
        for name, fn in steps_fn.items():
            seconds[name].append(time_call(fn, steps))
    for name, s in seconds.items():
        best = min(s)
        row[name] = {"s_per_step": s, "utterances_per_s": [P * K / x for x in s], "best_utterances_per_s": P * K / best}
    row["speedup_per_repeat"] = [r / f for r, f in zip(seconds["reference"], seconds["fast"])]
    return row


# -- DeepVOX alone: every formulation tried ------------------------------------------------------


def _convs(vox: DeepVOX) -> list[torch.nn.Conv2d]:
    return [m for m in vox if isinstance(m, torch.nn.Conv2d)]


def wide_conv2d(vox: DeepVOX, x: torch.Tensor) -> torch.Tensor:
    """The reference code's own layout: one (1, C, 160, frames) image, (k, 1) kernels."""
    h = x.t().reshape(1, 1, 160, len(x))
    for i, c in enumerate(_convs(vox)):
        h = F.selu(c(F.pad(h, (0, 0, 3, 4)) if i == 5 else h))
    return h.reshape(40, len(x)).t()


def im2col_gemm(vox: DeepVOX, x: torch.Tensor) -> torch.Tensor:
    """Channels-last (frames, samples, C): each conv as dilated-tap concatenation + one addmm."""
    h = x.unsqueeze(-1)
    for i, c in enumerate(_convs(vox)):
        h = F.pad(h, (0, 0, 3, 4)) if i == 5 else h
        k, d = c.kernel_size[0], c.dilation[0]
        n, length, ch = h.shape
        lo = length - d * (k - 1)
        cols = torch.cat([h[:, j * d:j * d + lo] for j in range(k)], dim=-1).reshape(n * lo, k * ch)
        w = c.weight.squeeze(-1).permute(2, 1, 0).reshape(k * ch, -1)
        h = F.selu(torch.addmm(c.bias, cols, w)).view(n, lo, -1)
    return h.reshape(len(x), -1)


def tried_table(repeats: int, with_compile: bool) -> dict:
    P, K = SETTINGS["shipped_16x6"]
    x = torch.randn(P * K * CROP, 160, generator=torch.Generator().manual_seed(1))
    ref = DeepVOX()
    holder = torch.nn.Module()
    holder.fCNN = copy.deepcopy(ref)
    fast = use_deepvox(holder, "fast").fCNN
    unchunked = copy.deepcopy(fast)
    unchunked.chunk_frames = len(x)  # the dense last layer alone
    unchunked.explicit_backward = False
    onednn_backward = copy.deepcopy(fast)
    onednn_backward.explicit_backward = False  # the previous fast default
    variants: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "reference_conv1d": ref,
        "wide_conv2d_reference_layout": lambda t: wide_conv2d(ref, t),
        "im2col_gemm_channels_last": lambda t: im2col_gemm(ref, t),
        "frame_chunks_1200": lambda t: torch.cat([ref(t[i:i + 1200]) for i in range(0, len(t), 1200)]),
        "last_conv_as_linear_unchunked": unchunked,
        "chunks_1200_and_last_conv_as_linear": onednn_backward,
        "fast_chunks_last_linear_conv_backward_as_transpose_and_strided_conv": fast,
    }
    if with_compile:
        variants["fast_torch_compile"] = torch.compile(fast)
    rows: dict = {}
    y0 = ref(x).detach()
    for name, fn in variants.items():
        t0 = time.perf_counter()
        y = fn(x)
        y.sum().backward()  # warm-up (and compilation)
        rows[name] = {"first_call_s": time.perf_counter() - t0, "max_abs_diff": float((y.detach() - y0).abs().max()),
                      "s": []}
    flops = count_flops(lambda: ref(x).sum().backward())
    for _ in range(repeats):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn(x).sum().backward()
            rows[name]["s"].append(time.perf_counter() - t0)
    for name, row in rows.items():
        row["utterances_per_s"] = [P * K / s for s in row["s"]]
        row["speedup_vs_reference"] = min(rows["reference_conv1d"]["s"]) / min(row["s"])
    return {"P": P, "K": K, "frames": len(x), "flops_forward_backward": flops, "variants": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per repeat")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--tried", action="store_true", help="with --quick: still time the tried table")
    ap.add_argument("--no-compile", action="store_true", help="leave torch.compile out of the tried table")
    ap.add_argument("--note", default="", help="recorded in the results (e.g. 'machine shared with other jobs')")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    steps, repeats = (1, 2) if args.quick else (args.steps, args.repeats)
    peak = matmul_peak()
    print(f"float32 matmul peak: {peak['gflop_per_s']:.1f} GFLOP/s with {peak['threads']} threads")
    runs = [("shipped_16x6", "ge2e")] if args.quick else [(s, loss) for s in SETTINGS for loss in ("ge2e", "triplet")]
    rows = {}
    for name, loss in runs:
        P, K = SETTINGS[name]
        row = compare(P, K, loss, steps, repeats)
        for impl in ("reference", "fast"):
            row[impl].update(achieved(row["flops_per_step"], P * K / row[impl]["best_utterances_per_s"], peak))
        rows[f"{name}_{loss}"] = row
        print(f"{name:16s} {loss:8s} ref {row['reference']['best_utterances_per_s']:6.1f} utt/s "
              f"({row['reference']['fraction_of_peak']:.3f} of peak)  fast {row['fast']['best_utterances_per_s']:6.1f} "
              f"utt/s  speed-up {row['speedup_per_repeat']}  grad diff/scale {row['gradient_max_diff_over_scale']}")
    tried = tried_table(repeats, not args.no_compile) if args.tried or not args.quick else None
    if tried:
        for name, r in tried["variants"].items():
            print(f"  DeepVOX {name:32s} {max(r['utterances_per_s']):7.1f} utt/s  x{r['speedup_vs_reference']:.2f}  "
                  f"max diff {r['max_abs_diff']:.1e}")
    peak_after = matmul_peak()
    write_results("train_speed.json", {"device": "cpu", "threads": args.threads, "note": args.note,
                                       "matmul_peak": peak, "matmul_peak_after": peak_after, "results": rows,
                                       "deepvox_tried": tried})


if __name__ == "__main__":
    main()
