"""DeepTalk extraction speed on real speech (EmoDB): per-window reference vs the fast path.

The paper's windowing (1 s windows, 10 ms hop) embeds every audio second ~100 times. The
reference path slices every window and runs the whole network on it (all windows of an
utterance batched); the fast path frames the utterance and runs the DeepVOX filterbank once,
then the GST per window. Both run in this process, on the same utterances, same threads.
Also the reference partial-utterance embedding (200-frame partials, 50 % overlap). FLOPs of
each path come from torch's flop counter (an untimed pass; convolutions and matmuls) and the
float32 matmul peak is measured in the same run with the same threads: ``gflop_per_s`` and
``fraction_of_peak`` say how close each path runs to the machine's limit.

    python benchmarks/extract_speed.py          # 60 EmoDB utterances
    python benchmarks/extract_speed.py --quick  # 10 utterances (< 1 min)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from _common import SHARED_DATA, achieved, count_flops, matmul_peak, write_results
from deeptalk_ser.data.audio.io import load_audio
from deeptalk_ser.embedding.encoders.deeptalk import DeepTalkEncoder

SHIPPED = Path(__file__).resolve().parents[1] / "src" / "deeptalk_ser" / "embedding" / "checkpoints" / "deeptalk_speechocean762.pt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=60, help="EmoDB utterances to use")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--checkpoint", default=str(SHIPPED), help="DeepTalk weights (default: the shipped checkpoint; "
                    "random weights barely depend on the input and would make max_abs_diff meaningless)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    wav_dir = SHARED_DATA / "emodb" / "wav"
    if not wav_dir.is_dir():
        sys.exit(f"skip: real EmoDB not found at {wav_dir} (set DEEPTALK_DATA_DIR)")
    n = 10 if args.quick else args.n
    files = sorted(wav_dir.glob("*.wav"))[:: max(1, 535 // n)][:n]
    enc = DeepTalkEncoder(checkpoint=args.checkpoint)
    wavs = [enc.frontend(*load_audio(f)) for f in files]
    audio_s = sum(len(w) for w in wavs) / enc.sample_rate
    win, hop = 8000, 80  # 1 s / 10 ms at 8 kHz

    def run(fn) -> tuple[float, list[np.ndarray]]:
        fn(wavs[0], win, hop)  # warm-up
        t0 = time.perf_counter()
        out = [fn(w, win, hop) for w in wavs]
        return time.perf_counter() - t0, out

    peak = matmul_peak()
    t_ref, ref = run(enc.embed_windowed_reference)
    t_fast, fast = run(enc.embed_windowed)
    flops_ref = count_flops(lambda: [enc.embed_windowed_reference(w, win, hop) for w in wavs])
    flops_fast = count_flops(lambda: [enc.embed_windowed(w, win, hop) for w in wavs])
    n_windows = sum(len(r) for r in ref)
    diffs = [np.nanmax(np.abs(a - b)) for a, b in zip(ref, fast) if len(a)]
    # the reference partial embedding needs >= 200 frames (2 s) after VAD: time the ones it embeds
    t0 = time.perf_counter()
    partial_audio_s = sum(len(w) for w in wavs if enc.embed_utterance(w) is not None) / enc.sample_rate
    t_partial = time.perf_counter() - t0
    res = {
        "corpus": "emodb (real speech, after the DeepTalk front end: 8 kHz, -30 dBFS, VAD)",
        "utterances": len(wavs), "audio_seconds": audio_s, "windows": n_windows,
        "window_s": 1.0, "hop_s": 0.01, "threads": args.threads,
        "reference_seconds": t_ref, "fast_seconds": t_fast,
        "reference_audio_s_per_s": audio_s / t_ref, "fast_audio_s_per_s": audio_s / t_fast,
        "reference_windows_per_s": n_windows / t_ref, "fast_windows_per_s": n_windows / t_fast,
        "reference_real_time_factor": t_ref / audio_s, "fast_real_time_factor": t_fast / audio_s,
        "speedup": t_ref / t_fast, "max_abs_diff": float(max(diffs)) if diffs else None,
        "partial_utterance_seconds": t_partial, "partial_utterance_audio_seconds": partial_audio_s,
        "partial_utterance_audio_s_per_s": partial_audio_s / t_partial if partial_audio_s else None,
        "checkpoint": Path(args.checkpoint).name if args.checkpoint else None,
        "device": "cpu", "matmul_peak": peak,
        "reference_flops": flops_ref, "fast_flops": flops_fast,
        "reference_achieved": achieved(flops_ref, t_ref, peak), "fast_achieved": achieved(flops_fast, t_fast, peak),
    }
    for k, v in res.items():
        print(f"{k:32s} {v}")
    write_results("extract_speed.json", res)


if __name__ == "__main__":
    main()
