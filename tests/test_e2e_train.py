"""End to end: train.py on a tiny generated Kaldi corpus: fit, kill + exact resume (also with
DataLoader workers), DDP (gloo), prepare_only; and the trainer options it composes."""

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


@pytest.mark.parametrize("loss", ["ge2e", pytest.param("triplet", marks=pytest.mark.slow)])  # aam: test_training_recipe
def test_train_writes_checkpoints_that_the_encoder_loads(corpus: Path, tmp_path: Path, loss: str) -> None:
    run = tmp_path / "run"
    run_script("train.py", *TINY, f"loss={loss}", f"data.root={corpus}", "trainer.max_steps=4",
               f"hydra.run.dir={run}", tmp=tmp_path)
    summary = read_json(run / "train_summary.json")
    assert summary["global_step"] == 4
    assert summary["train_speakers"] == 5 and summary["val_utterances"] == 3 * 4
    assert summary["train_utterances"] == 5 * 4 and summary["skipped"] == []
    assert summary["train_store"]["utterances"] == 5 * 4 and Path(summary["train_store"]["path"]).is_dir()
    assert 0.0 <= summary["best_val_eer"] <= 1.0
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file()
    from deeptalk_ser.embedding.encoders.deeptalk import DeepTalkEncoder

    enc = DeepTalkEncoder(checkpoint=str(last))
    sd = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    assert torch.equal(enc.net.fCNN[0].weight, sd["net.fCNN.0.weight"])


@pytest.mark.slow  # the resume-with-workers tests check identical steps in the default run
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


def _step_losses(run: Path) -> list[float]:
    import csv

    with open(run / "csv" / "metrics.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("train/loss_step")]
    return [float(r["train/loss_step"]) for r in sorted(rows, key=lambda r: int(r["step"]))]


@pytest.fixture(scope="module")
def uninterrupted(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("uninterrupted")
    run_script("train.py", *TINY, *RESUME, f"data.root={corpus}", "trainer.max_steps=5", f"hydra.run.dir={tmp / 'run'}",
               tmp=tmp)
    return tmp / "run"


#: every step logged and checkpointed (last.ckpt), crops from 2 DataLoader workers
RESUME = ["trainer.log_every_n_steps=1", "+callbacks.model_checkpoint.every_n_train_steps=1", "training.num_workers=2"]


@pytest.mark.parametrize("stop_at", [pytest.param(2, marks=pytest.mark.slow), 3],  # mid-epoch is the harder resume
                         ids=["epoch_end", "mid_epoch"])
def test_resume_with_workers_continues_with_the_identical_steps(corpus: Path, uninterrupted: Path, tmp_path: Path,
                                                                stop_at: int) -> None:
    """Train, checkpoint, resume: the resumed steps see the same batches (same losses, same final
    weights) as the uninterrupted run, although 2 workers prefetched ahead of the checkpoint."""
    first, second = tmp_path / "first", tmp_path / "second"
    run_script("train.py", *TINY, *RESUME, f"data.root={corpus}", f"trainer.max_steps={stop_at}",
               f"hydra.run.dir={first}", tmp=tmp_path)
    ckpt = torch.load(first / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == stop_at and ckpt["SpeakerDataModule"]["batches_consumed"] == stop_at
    run_script("train.py", *TINY, *RESUME, f"data.root={corpus}", "trainer.max_steps=5",
               f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={second}", tmp=tmp_path)
    summary = read_json(second / "train_summary.json")
    assert summary["global_step"] == 5 and summary["train_store"]["reused"]
    assert _step_losses(second) == _step_losses(uninterrupted)[stop_at:]
    a = torch.load(uninterrupted / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    b = torch.load(second / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # covered in the default run by the training store end to end: test_the_users_voxceleb_command_on_fixture_trees
def test_prepare_only_builds_the_store_and_exits(corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_script("train.py", *TINY, f"data.root={corpus}", "prepare_only=true", f"hydra.run.dir={run}", tmp=tmp_path)
    store = read_json(run / "train_summary.json")["train_store"]
    assert not store["reused"] and store["utterances"] == 20 and store["speakers"] == 5 and store["n_skipped"] == 0
    assert not (run / "checkpoints").exists()
    run_script("train.py", *TINY, f"data.root={corpus}", "trainer.max_steps=1", f"hydra.run.dir={tmp_path / 'train'}",
               tmp=tmp_path)
    summary = read_json(tmp_path / "train" / "train_summary.json")
    assert summary["train_store"]["reused"] and summary["train_store"]["path"] == store["path"]


def test_the_users_voxceleb_command_on_fixture_trees(tmp_path: Path) -> None:
    """``python train.py encoder=deeptalk data=voxceleb`` as typed (plus a tiny batch): a VoxCeleb1
    + VoxCeleb2 (m4a) fixture tree is prepared into the store, trained, checkpointed and resumed."""
    import soundfile as sf

    from conftest import speech_like
    from corpora.speaker_fixtures import build_voxceleb1, build_voxceleb2

    data = tmp_path / "data"
    build_voxceleb1(data / "voxceleb1")
    build_voxceleb2(data / "voxceleb2", seconds=2.0)
    for k, wav in enumerate(sorted((data / "voxceleb1" / "wav").rglob("*.wav"))):  # tones -> speech the VAD keeps
        sf.write(str(wav), speech_like(2.0, 16000, f0=90.0 + 25 * k), 16000)
    env = {"DEEPTALK_DATA_DIR": str(data)}
    small = ["training.speakers_per_batch=2", "training.utterances_per_speaker=2", "training.crop_frames=60",
             "training.batches_per_epoch=2", "training.val_speakers=2", "logger=csv"]
    first = tmp_path / "first"
    run_script("train.py", "encoder=deeptalk", "data=voxceleb", *small, "trainer.max_steps=2",
               f"hydra.run.dir={first}", tmp=tmp_path, env=env)
    summary = read_json(first / "train_summary.json")
    store = summary["train_store"]
    assert summary["global_step"] == 2 and not store["reused"]
    # 7 VoxCeleb1 dev + 3 VoxCeleb2 dev (m4a) utterances of 5 speakers; 2 speakers held out for val/eer
    assert store["utterances"] == summary["train_utterances"] and store["speakers"] == summary["train_speakers"] == 3
    assert summary["train_utterances"] + summary["val_utterances"] == 10 and store["n_skipped"] == 0
    second = tmp_path / "second"
    run_script("train.py", "encoder=deeptalk", "data=voxceleb", *small, "trainer.max_steps=4",
               f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={second}", tmp=tmp_path, env=env)
    resumed = read_json(second / "train_summary.json")
    assert resumed["global_step"] == 4 and resumed["train_store"]["reused"]


@pytest.mark.slow  # covered in the default run by train.py end to end: the other tests of this file
def test_fine_tune_from_a_checkpoint_and_refuse_a_misfit(corpus: Path, tmp_path: Path) -> None:
    """``training.init_checkpoint=<file>`` starts from those weights (not a resume: the step count
    starts at 0); a file whose shapes do not fit is one line naming it, and so is
    ``encoder.checkpoint=<file>`` (what extraction loads, not where training starts)."""
    from deeptalk_ser.embedding.encoders.deeptalk import build_net, load_checkpoint

    shipped = PROJECT_ROOT / "src" / "deeptalk_ser" / "embedding" / "checkpoints" / "deeptalk_speechocean762.pt"
    run = tmp_path / "ft"
    run_script("train.py", *TINY, f"data.root={corpus}", "trainer.max_steps=1", "training.optimizer.lr=1e-12",
               f"training.init_checkpoint={shipped}", f"hydra.run.dir={run}", tmp=tmp_path)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 1
    ref = build_net(0)
    load_checkpoint(ref, shipped)
    tuned = {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    w = "deepvox.conv1.weight" if "deepvox.conv1.weight" in tuned else next(iter(tuned))
    assert torch.allclose(tuned[w], ref.state_dict()[w], atol=1e-6)  # lr ~0: still the shipped weights

    bad = tmp_path / "bad.pt"
    torch.save({k: torch.zeros(3) for k in ref.state_dict()}, bad)
    proc = run_script("train.py", *TINY, f"data.root={corpus}", "trainer.max_steps=1",
                      f"training.init_checkpoint={bad}", f"hydra.run.dir={tmp_path / 'bad'}", tmp=tmp_path, check=False,
                      env={"HYDRA_FULL_ERROR": "0"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and str(bad) in proc.stderr
    proc = run_script("train.py", *TINY, f"data.root={corpus}", "trainer.max_steps=1", f"encoder.checkpoint={shipped}",
                      f"hydra.run.dir={tmp_path / 'enc'}", tmp=tmp_path, check=False, env={"HYDRA_FULL_ERROR": "0"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "encoder.checkpoint: train.py starts from training.init_checkpoint" in proc.stderr
