"""End to end: train.py on a tiny generated Kaldi corpus: fit, kill + exact resume, DDP (gloo);
and the trainer options it composes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from e2e_utils import read_json, run_script, speech_kaldi_tree
from markers import PROJECT_ROOT

pytestmark = pytest.mark.e2e

TINY = ["data=speechocean762", "training.speakers_per_batch=3", "training.utterances_per_speaker=2",
        "training.crop_frames=60", "training.batches_per_epoch=2", "training.val_speakers=3", "logger=csv"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speech_kaldi_tree(tmp_path_factory.mktemp("kaldi") / "speechocean762")


@pytest.mark.parametrize("loss", ["ge2e", "triplet"])
def test_train_writes_checkpoints_that_the_encoder_loads(corpus: Path, tmp_path: Path, loss: str) -> None:
    run = tmp_path / "run"
    run_script("train.py", *TINY, f"loss={loss}", f"data.root={corpus}", "trainer.max_steps=4",
               f"hydra.run.dir={run}", tmp=tmp_path)
    summary = read_json(run / "train_summary.json")
    assert summary["global_step"] == 4
    assert summary["train_speakers"] == 5 and summary["val_utterances"] == 3 * 4
    assert 0.0 <= summary["best_val_eer"] <= 1.0
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file()
    from deeptalk_ser.embedding.encoders.deeptalk import DeepTalkEncoder

    enc = DeepTalkEncoder(checkpoint=str(last))
    sd = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    assert torch.equal(enc.net.fCNN[0].weight, sd["net.fCNN.0.weight"])


def test_killed_run_resumes_exactly(corpus: Path, tmp_path: Path) -> None:
    """SIGKILL a long run once it has a last.ckpt; resuming continues its step count."""
    run = tmp_path / "run"
    env = {**os.environ, "DEEPTALK_CACHE_DIR": str(tmp_path / "cache"), "WANDB_MODE": "offline"}
    cmd = [sys.executable, str(PROJECT_ROOT / "train.py"), *TINY, f"data.root={corpus}", "trainer.max_steps=100000",
           f"hydra.run.dir={run}", f"paths.log_dir={tmp_path / 'outputs'}"]
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run / "checkpoints" / "last.ckpt"
    try:
        deadline = time.time() + 240
        while not last.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert last.exists(), "no last.ckpt appeared"
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    step = ckpt["global_step"]
    assert step >= 2 and step % 2 == 0  # checkpoints are written at epoch ends
    assert "SpeakerDataModule" in ckpt and "sampler" in ckpt["SpeakerDataModule"]
    run2 = tmp_path / "run2"
    run_script("train.py", *TINY, f"data.root={corpus}", f"trainer.max_steps={step + 2}", f"ckpt_path={last}",
               f"hydra.run.dir={run2}", tmp=tmp_path)
    assert read_json(run2 / "train_summary.json")["global_step"] == step + 2
    resumed = torch.load(run2 / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert resumed["global_step"] == step + 2
    assert resumed["epoch"] > ckpt["epoch"]


def test_ddp_two_cpu_processes(corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_script("train.py", *TINY, f"data.root={corpus}", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
               "trainer.max_steps=2", f"hydra.run.dir={run}", tmp=tmp_path, timeout=400)
    summary = read_json(run / "train_summary.json")
    assert summary["global_step"] == 2
    assert (run / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("option, precision, sync_bn", [("default", "32-true", False), ("cpu", "32-true", False),
                                                        ("ddp", "32-true", False), ("gpu", "bf16-mixed", True)])
def test_trainer_options_are_plain_trainer_arguments(option: str, precision: str, sync_bn: bool,
                                                     monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Precision and sync-BN come from the YAML as they are (CPU-safe unless trainer=gpu)."""
    monkeypatch.setenv("PROJECT_ROOT", str(PROJECT_ROOT))
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"trainer={option}", f"trainer.default_root_dir={tmp_path}"])
    assert cfg.trainer.precision == precision and cfg.trainer.get("sync_batchnorm", False) == sync_bn
    accelerator = {"accelerator": "cpu"} if option == "gpu" else {}  # no GPU needed to check the rest
    trainer = instantiate(cfg.trainer, logger=False, **accelerator)
    assert trainer.precision == precision
