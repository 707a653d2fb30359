"""Extraction scaling from 1 to 2 DDP processes on CPU (gloo): ``extract.py`` on real EmoDB with
the shipped DeepTalk checkpoint and the paper's windowing, each run with an empty cache so it
really extracts. Wall time includes process start-up, model load and the shard merge.

    python benchmarks/extract_ddp_scaling.py        # -> benchmarks/results/extract_ddp_scaling.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import SHARED_DATA, write_results

ROOT = Path(__file__).resolve().parents[1]


def run(devices: int, tmp: Path) -> dict:
    run_dir = tmp / f"run{devices}"
    env = {**os.environ, "DEEPTALK_CACHE_DIR": str(tmp / f"cache{devices}"), "WANDB_MODE": "offline"}
    trainer = ["trainer=ddp", "trainer.accelerator=cpu", f"trainer.devices={devices}"] if devices > 1 else ["trainer.accelerator=cpu"]
    cmd = [sys.executable, str(ROOT / "extract.py"), "data=emodb", "encoder=deeptalk", *trainer,
           f"hydra.run.dir={run_dir}", f"paths.log_dir={tmp}"]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    summary = json.loads((run_dir / "extract_summary.json").read_text())
    return {"processes": devices, "command_wall_s": wall, "extract_wall_s": summary["wall_seconds"],
            "audio_seconds": summary["audio_seconds"], "embedded": summary["embedded"],
            "audio_s_per_s": summary["audio_seconds"] / summary["wall_seconds"]}


def main() -> None:
    if not (SHARED_DATA / "emodb").is_dir():
        sys.exit(f"skip: real EmoDB not found under {SHARED_DATA}")
    with tempfile.TemporaryDirectory() as d:
        rows = [run(n, Path(d)) for n in (1, 2)]
    for r in rows:
        print(r)
    write_results("extract_ddp_scaling.json", {"corpus": "emodb (535 utterances)", "rows": rows,
                                               "speedup_2_vs_1": rows[0]["extract_wall_s"] / rows[1]["extract_wall_s"]})


if __name__ == "__main__":
    main()
