"""Shared bits of the benchmark scripts: machine facts, atomic result files, and the reference
optimiser step as ``conf/`` configures it."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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
