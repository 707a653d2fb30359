"""Shared bits of the benchmark scripts: machine facts, atomic result files, and the reference
optimiser step as ``conf/`` configures it."""

from __future__ import annotations

import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from deeptalk_ser.utils.io import write_json_atomic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from synthetic_audio import speech_like  # noqa: E402,F401  (the tests' generator: same VAD path)

CONF = Path(__file__).resolve().parents[1] / "conf"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
SHARED_DATA = Path(os.environ.get("DEEPTALK_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def machine() -> dict[str, Any]:
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def write_results(name: str, results: dict[str, Any]) -> Path:
    path = RESULTS_DIR / name
    write_json_atomic(path, {**results, "machine": machine()})
    print(f"-> {path}")
    return path


def reference_step_config() -> tuple[Any, float]:
    """What ``train.py`` steps with by default, read from the configs (never restated here):
    ``training.optimizer`` of ``conf/train.yaml`` as its partial (Adam 1e-4) and
    ``trainer.gradient_clip_val`` of ``conf/trainer/default.yaml`` (global L2 norm)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    optimizer = instantiate(OmegaConf.load(CONF / "train.yaml").training.optimizer, _convert_="all")
    return optimizer, float(OmegaConf.load(CONF / "trainer" / "default.yaml").gradient_clip_val)


def optimizer_step(module: Any, frames: torch.Tensor, labels: torch.Tensor, bf16: bool = False) -> Callable[[], None]:
    """One training step as ``train.py`` takes it (forward, loss, backward, clip, optimiser) on
    fixed crops, for a ``SpeakerEncoderModule`` with the :func:`reference_step_config` optimiser;
    ``bf16`` runs forward and loss under bfloat16 autocast, as ``trainer=gpu`` does."""
    optimizer, grad_clip = reference_step_config()
    module.optimizer = optimizer
    opt = module.configure_optimizers()
    autocast = torch.autocast(device_type=frames.device.type, dtype=torch.bfloat16, enabled=bf16)

    def step() -> None:
        opt.zero_grad()
        with autocast:
            loss = module.compute_loss(module(frames), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
        opt.step()
    return step


def matmul_peak(n: int = 2048, repeats: int = 5, device: str = "cpu", dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """This machine's matmul rate (best of ``repeats`` n x n products, current thread count): the
    denominator of every ``fraction_of_peak``, measured in the same run as the work it judges."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    a @ b  # warm-up
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return {"matmul_n": n, "dtype": str(dtype).removeprefix("torch."), "device": device,
            "threads": torch.get_num_threads(), "gflop_per_s": 2 * n ** 3 / best / 1e9}


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` by torch's flop counter (matmuls and convolutions, forward and
    backward; element-wise work such as activations and optimiser updates is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def achieved(flops: float, seconds: float, peak: dict[str, Any]) -> dict[str, float]:
    """``gflop_per_s`` and ``fraction_of_peak`` of ``flops`` done in ``seconds``."""
    rate = flops / seconds / 1e9
    return {"gflop_per_s": rate, "fraction_of_peak": rate / peak["gflop_per_s"]}
