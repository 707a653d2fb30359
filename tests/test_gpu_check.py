"""benchmarks/gpu_check.py --dry-run: every part runs on CPU at toy sizes and writes one JSON
(the prepared script a GPU session runs; issue 24 item 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from markers import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "benchmarks" / "gpu_check.py"


def _dry_run(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out),
                           "--inputs", str(tmp_path / "no_inputs"), *extra],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def _check_common(res: dict) -> None:
    assert res["dry_run"] is True and res["device"] == "cpu"
    assert res["matmul_peak"]["fp32"]["gflop_per_s"] > 0
    crema = res["svm"]["crema_d"]
    assert crema["sklearn"]["accuracy"] > 0 and crema["train_rows"] > 0
    assert res["svm"]["cuml_available"] is False and "prediction_agreement" not in crema
    ext = res["extraction"]
    assert ext["fp32"]["windows"] > 0 and ext["fp32"]["windows"] == ext["bf16"]["windows"]
    assert ext["bf16"]["bf16_active"] is False and ext["max_abs_diff_bf16_vs_fp32"] == 0.0  # CPU ignores bf16
    train = res["training"]
    for prec in ("fp32", "bf16"):
        ref = train[f"reference_{prec}"]
        assert ref["utterances_per_s"] > 0 and 0 < ref["fraction_of_peak"] and ref["flops_per_step"] > 0
        assert train[f"largest_{prec}"]["P"] > ref["P"]


def test_gpu_check_dry_run_smoke(tmp_path: Path) -> None:
    res = _dry_run(tmp_path, "--skip", "compile")
    _check_common(res)
    assert not any("compile" in k for k in res["training"])


@pytest.mark.slow
def test_gpu_check_dry_run_every_part(tmp_path: Path) -> None:
    res = _dry_run(tmp_path)
    _check_common(res)
    assert res["training"]["reference_fp32_compile"]["compile"] is True
