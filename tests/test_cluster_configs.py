"""Many GPUs, many nodes, SLURM: the configs compose to the trainer and launcher settings a cluster
run needs, checked here without a cluster. The Trainer is built on CPU (never fitted) under
simulated SLURM variables, the submitit launcher writes its sbatch script without submitting,
and the thread-count rule of ``deeptalk_ser.utils.threads`` is checked on its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import DictConfig, OmegaConf, open_dict

from deeptalk_ser.utils import threads
from deeptalk_ser.utils.threads import (ThreadPlan, apply_threads, auto_thread_count, cgroup_cpu_limit,
                                        configure_threads_from_config, devices_per_node, local_world_size,
                                        plan_threads, processes_sharing)

REAL_AVAILABLE_CPUS = threads.available_cpus  # clean_env patches the module's name
PROJECT = Path(__file__).resolve().parents[1]
CONF = PROJECT / "conf"
#: variables a launcher or another cluster run may have left in the environment: Lightning (and our
#: thread rule) would read them, so every test starts without them.
CLUSTER_VARS = ("LOCAL_WORLD_SIZE", "LOCAL_RANK", "RANK", "GROUP_RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR",
                "MASTER_PORT", "OMP_NUM_THREADS", "TORCHELASTIC_RUN_ID", "LSB_JOBID", "OMPI_COMM_WORLD_SIZE",
                "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_JOB_NAME", "SLURM_JOB_ID",
                "SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE", "SLURM_NNODES", "SLURM_NODELIST",
                "SLURM_CPUS_PER_TASK", "DEEPTALK_SLURM_PARTITION", "DEEPTALK_SLURM_ACCOUNT", "DEEPTALK_SLURM_QOS",
                "DEEPTALK_SLURM_CONSTRAINT", "DEEPTALK_SLURM_TIMEOUT_MIN", "DEEPTALK_SLURM_CPUS_PER_TASK",
                "DEEPTALK_SLURM_MEM_GB", threads.OWN_MARK)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch):
    for var in CLUSTER_VARS:  # set, then deleted: the teardown also removes what a test's code sets
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setenv("PROJECT_ROOT", str(PROJECT))
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)  # the rule's input, not this machine's
    before = torch.get_num_threads()
    yield monkeypatch
    torch.set_num_threads(before)


def compose_cfg(config_name: str, overrides: list[str], tmp: Path, keep_hydra: bool = False) -> DictConfig:
    """Compose like ``@hydra.main`` (the Hydra config registered so ``${hydra:...}`` resolves); the
    output and sweep folders go to ``tmp``. ``keep_hydra``: return the ``hydra`` node too."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, return_hydra_config=True,
                      overrides=[*overrides, f"paths.output_dir={tmp / 'out'}", f"paths.data_dir={tmp / 'data'}",
                                 f"hydra.sweep.dir={tmp / 'sweep'}"])
    HydraConfig.instance().set_config(cfg)
    if not keep_hydra:
        with open_dict(cfg):
            del cfg["hydra"]
    return cfg


@pytest.fixture(autouse=True)
def _reset_hydra_config():
    yield
    HydraConfig.instance().cfg = None  # type: ignore[assignment]


def build_trainer(cfg: DictConfig, **overrides: Any):
    """``cfg.trainer`` instantiated as train.py does, minus callbacks and loggers (never fitted)."""
    return instantiate(cfg.trainer, callbacks=[], logger=False, enable_checkpointing=False,
                       use_distributed_sampler=False, _convert_="all", **overrides)


# --------------------------------------------------------------------------- launcher configs
GPU_SWEEP = ["hydra/launcher=slurm_gpu", "trainer=gpu", "trainer.devices=4", "trainer.num_nodes=2"]


def test_slurm_gpu_launcher_one_task_per_gpu(tmp_path: Path) -> None:
    cfg = compose_cfg("train", ["encoder=deeptalk", "data=voxceleb", *GPU_SWEEP], tmp_path, keep_hydra=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.nodes, launcher.gpus_per_node) == (4, 2, 4)
    assert (launcher.cpus_per_task, launcher.timeout_min, launcher.max_num_timeout) == (8, 1440, 0)
    assert launcher.partition is None and launcher.mem_gb is None and launcher.account is None
    assert cfg.trainer.devices * cfg.trainer.num_nodes == launcher.tasks_per_node * launcher.nodes
    assert (cfg.trainer.accelerator, cfg.trainer.precision, cfg.trainer.sync_batchnorm) == ("gpu", "bf16-mixed", True)
    assert cfg.data.name == "voxceleb" and cfg.encoder._target_.endswith("DeepTalkEncoder")


def test_slurm_site_settings_from_the_environment(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    for var, value in {"PARTITION": "a100", "ACCOUNT": "speech", "QOS": "high", "TIMEOUT_MIN": "2880",
                       "CPUS_PER_TASK": "12", "MEM_GB": "480"}.items():
        clean_env.setenv(f"DEEPTALK_SLURM_{var}", value)
    launcher = compose_cfg("train", GPU_SWEEP, tmp_path, keep_hydra=True).hydra.launcher
    assert (launcher.partition, launcher.account, launcher.qos) == ("a100", "speech", "high")
    assert (launcher.timeout_min, launcher.cpus_per_task, launcher.mem_gb) == (2880, 12, 480)


@pytest.mark.parametrize("launcher_name,gpus", [("slurm_cpu", None), ("slurm_gpu", 1)])
def test_evaluate_launchers_one_task_per_job(tmp_path: Path, launcher_name: str, gpus: int | None) -> None:
    cfg = compose_cfg("evaluate", [f"hydra/launcher={launcher_name}"], tmp_path, keep_hydra=True)
    launcher = cfg.hydra.launcher
    assert (launcher.tasks_per_node, launcher.nodes, launcher.gpus_per_node) == (1, 1, gpus)
    assert cfg.trainer.devices == 1 and cfg.trainer.num_nodes == 1


class _FakeJob:
    def results(self) -> list[str]:
        return ["not run"]


def test_submitit_writes_the_sbatch_script_a_cluster_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real launcher code, up to the submission: its sbatch script asks for one task per GPU."""
    submitit = pytest.importorskip("submitit")
    from submitit.slurm.slurm import SlurmExecutor

    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # "srun is here"
    scripts: list[str] = []

    def fake_map_array(self, fn, *iterables):  # what submitit would sbatch, without sbatch
        scripts.append(self._executor._make_submission_file_text("python -u -m submitit.core._submit X", "uid"))
        return [_FakeJob() for _ in zip(*iterables)]

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", fake_map_array)
    monkeypatch.setenv("DEEPTALK_SLURM_PARTITION", "gpu")
    cfg = compose_cfg("train", ["data=voxceleb", *GPU_SWEEP], tmp_path, keep_hydra=True)
    launcher = instantiate(cfg.hydra.launcher)
    launcher.config = cfg
    assert launcher.launch([["data=voxceleb"]], initial_job_idx=0) == ["not run"]
    (script,) = scripts
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --partition=gpu", "#SBATCH --time=1440",
                 "#SBATCH --signal=USR2@120"):
        assert line in script, script
    assert "srun" in script and "--mem" not in script


def test_normal_runs_unaffected_by_the_plugin(tmp_path: Path) -> None:
    """The submitit plugin is installed, yet a run without ``hydra/launcher=...`` keeps Hydra's
    basic launcher (and the app composes with the plugin's configs registered)."""
    cfg = compose_cfg("train", ["data=voxceleb"], tmp_path, keep_hydra=True)
    assert cfg.hydra.launcher._target_ == "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
    proc = subprocess.run([sys.executable, str(PROJECT / "train.py"), "hydra/launcher=slurm_gpu", "trainer=gpu",
                           "trainer.devices=4", "trainer.num_nodes=2", "encoder=deeptalk", "data=voxceleb",
                           "--info", "defaults"], cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "hydra/launcher/slurm_gpu" in proc.stdout and "data/voxceleb" in proc.stdout


# --------------------------------------------------------------------------- trainer configs
def test_trainer_configs_take_num_nodes(tmp_path: Path) -> None:
    """``trainer.num_nodes=N`` is a plain override (no ``+``) on every training trainer variant."""
    for name in ("default", "ddp", "gpu"):
        cfg = compose_cfg("train", [f"trainer={name}", "trainer.num_nodes=2"], tmp_path)
        assert cfg.trainer.num_nodes == 2, name


def test_ddp_on_cpu_two_processes(tmp_path: Path) -> None:
    cfg = compose_cfg("train", ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.num_nodes=1"],
                      tmp_path)
    trainer = build_trainer(cfg)
    assert isinstance(trainer.strategy, DDPStrategy)
    assert (trainer.world_size, trainer.num_nodes, trainer.num_devices) == (2, 1, 2)
    assert isinstance(trainer.strategy.cluster_environment, LightningEnvironment)
    assert trainer.global_rank == 0 and trainer.strategy._get_process_group_backend() == "gloo"


def _slurm_env(monkeypatch: pytest.MonkeyPatch, ntasks: int, per_node: int, procid: int, nodes: int) -> None:
    """What srun sets in task ``procid`` of a job with ``nodes`` x ``per_node`` tasks."""
    for var, value in {"SLURM_NTASKS": ntasks, "SLURM_NTASKS_PER_NODE": per_node, "SLURM_TASKS_PER_NODE": f"{per_node}(x{nodes})",
                       "SLURM_PROCID": procid, "SLURM_LOCALID": procid % per_node, "SLURM_NODEID": procid // per_node,
                       "SLURM_NNODES": nodes, "SLURM_NODELIST": "gpu[07-08]", "SLURM_JOB_NAME": "train",
                       "SLURM_JOB_ID": "4242", "SLURM_CPUS_PER_TASK": 8}.items():
        monkeypatch.setenv(var, str(value))


def test_slurm_task_gets_its_rank_from_slurm(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    """Task 5 of 2 nodes x 4 tasks: Lightning takes SLURM's ranks (no processes of its own)."""
    _slurm_env(clean_env, ntasks=8, per_node=4, procid=5, nodes=2)
    assert SLURMEnvironment.detect()
    env = SLURMEnvironment()
    assert (env.world_size(), env.global_rank(), env.local_rank(), env.node_rank()) == (8, 5, 1, 1)
    assert env.main_address == "gpu07" and env.creates_processes_externally
    cfg = compose_cfg("train", [*GPU_SWEEP[1:], "trainer.accelerator=cpu", "trainer.precision=32-true"], tmp_path)
    trainer = build_trainer(cfg)
    assert isinstance(trainer.strategy, DDPStrategy)
    assert isinstance(trainer.strategy.cluster_environment, SLURMEnvironment)
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (8, 5, 1, 1)
    assert not trainer.is_global_zero


def test_slurm_launch_keeps_our_thread_count(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    """At fit/predict start Lightning's launcher resets torch threads to cpus // processes unless
    OMP_NUM_THREADS is set; configure_threads_from_config sets it, so the DataLoader workers stay counted and a
    SLURM task's own cores are not divided twice."""
    _slurm_env(clean_env, ntasks=8, per_node=4, procid=2, nodes=2)
    clean_env.setattr(threads, "available_cpus", lambda: 8)  # the task's --cpus-per-task=8, bound
    cfg = compose_cfg("train", [*GPU_SWEEP[1:], "trainer.accelerator=cpu", "trainer.precision=32-true",
                                "training.num_workers=1"], tmp_path)
    plan = configure_threads_from_config(cfg, "training.num_workers")
    assert (plan.local_processes, plan.torch_threads, plan.source) == (4, 4, "auto")  # 8 cores / (1 + 1 worker)
    trainer = build_trainer(cfg)
    assert trainer.strategy.launcher.launch(torch.get_num_threads) == 4  # Lightning alone: 8 // 4 = 2
    clean_env.setattr(threads, "available_cpus", lambda: 32)  # unbound task: the node's 32 cores
    assert configure_threads_from_config(cfg, "training.num_workers").torch_threads == 4  # 32 / (4 x 2)
    assert trainer.strategy.launcher.launch(torch.get_num_threads) == 4  # Lightning alone: 32 // 4 = 8


def test_slurm_tasks_that_do_not_match_the_trainer_are_refused(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    """trainer.devices=4 in a job of 2 tasks per node (on 4 nodes, so 8 tasks as 4 x 2 expects)
    would deadlock in the process group; Lightning refuses it at launch, naming both numbers."""
    _slurm_env(clean_env, ntasks=8, per_node=2, procid=0, nodes=4)
    cfg = compose_cfg("train", [*GPU_SWEEP[1:], "trainer.accelerator=cpu", "trainer.precision=32-true"], tmp_path)
    trainer = build_trainer(cfg)
    with pytest.raises(ValueError, match="ntasks-per-node=2"):
        trainer.strategy.launcher.launch(lambda: None)


def test_interactive_slurm_shell_is_not_a_slurm_run(clean_env: pytest.MonkeyPatch) -> None:
    _slurm_env(clean_env, ntasks=1, per_node=1, procid=0, nodes=1)
    clean_env.setenv("SLURM_JOB_NAME", "bash")
    assert not SLURMEnvironment.detect()


# --------------------------------------------------------------------------- data=voxceleb, runtime
def test_train_composes_voxceleb_as_typed(tmp_path: Path) -> None:
    cfg = compose_cfg("train", ["encoder=deeptalk", "data=voxceleb"], tmp_path)
    OmegaConf.resolve(cfg)
    assert cfg.data.name == "voxceleb" and cfg.data.loader._target_.endswith("PretrainMixCorpus")
    parts = cfg.data.loader.parts
    assert [p.root for p in parts] == [str(tmp_path / "data" / "voxceleb1"), str(tmp_path / "data" / "voxceleb2")]
    assert parts[0].sets == ["dev"] and parts[0].exclude_trial_list == "veri_test2.txt" and parts[1].subsets == ["dev"]
    assert dict(cfg.runtime) == {"torch_threads": None, "interop_threads": None, "compile": False, "compile_mode": None}


def test_compile_keeps_the_checkpoint_keys() -> None:
    """runtime.compile compiles the network in place (nn.Module.compile): the state_dict that
    checkpoints and export write keeps the plain keys (torch.compile(net) would add ``_orig_mod.``)."""
    from deeptalk_ser.embedding.encoders.deeptalk import build_net

    net = build_net(0)
    keys = list(net.state_dict())
    net.compile(mode=None)
    assert list(net.state_dict()) == keys and net._compiled_call_impl is not None


# --------------------------------------------------------------------------- thread counts
@pytest.mark.parametrize("cpus,workers,local,expected", [
    (2, 0, 1, 2), (2, 1, 1, 1), (16, 3, 1, 4), (64, 7, 4, 2), (64, 15, 8, 1), (8, 8, 4, 1), (1, 0, 1, 1), (96, 0, 8, 12)])
def test_auto_thread_count(cpus: int, workers: int, local: int, expected: int) -> None:
    assert auto_thread_count(cpus, workers, local) == expected
    assert auto_thread_count(cpus, workers, local) * local * (workers + 1) <= max(cpus, local * (workers + 1))


def test_auto_thread_count_refuses_nonsense() -> None:
    for args in ((0, 0, 1), (4, -1, 1), (4, 0, 0)):
        with pytest.raises(ValueError):
            auto_thread_count(*args)


def test_local_world_size_sources() -> None:
    assert local_world_size({"devices": 4}, env={}) == 4
    assert local_world_size({"devices": [0, 2]}, env={}) == 2
    assert local_world_size({"devices": "0,1,3"}, env={}) == 3
    assert local_world_size({"devices": "auto", "accelerator": "cpu"}, env={}) == 1
    assert local_world_size(None, env={}) == 1
    assert local_world_size({"devices": 1}, env={"LOCAL_WORLD_SIZE": "8"}) == 8  # torchrun
    slurm = {"SLURM_NTASKS": "8", "SLURM_JOB_NAME": "train"}
    assert local_world_size({"devices": 1}, env={**slurm, "SLURM_NTASKS_PER_NODE": "4"}) == 4
    assert local_world_size({"devices": 1}, env={**slurm, "SLURM_TASKS_PER_NODE": "2(x4)"}) == 2
    assert local_world_size({"devices": 3}, env={**slurm, "SLURM_JOB_NAME": "bash", "SLURM_NTASKS_PER_NODE": "4"}) == 3
    assert devices_per_node({"devices": "2"}) == 2


def test_slurm_bound_tasks_are_not_divided_twice() -> None:
    slurm = {"SLURM_NTASKS": "8", "SLURM_JOB_NAME": "train", "SLURM_CPUS_PER_TASK": "8"}
    assert processes_sharing(8, 4, env=slurm) == 1     # task bound to its 8 cores
    assert processes_sharing(32, 4, env=slurm) == 4    # no binding: the node's 32 cores are shared
    assert processes_sharing(8, 4, env={}) == 4
    bound = plan_threads(workers=3, local_processes=4, cpus=8, env=slurm)
    unbound = plan_threads(workers=3, local_processes=4, cpus=32, env=slurm)
    assert bound.torch_threads == unbound.torch_threads == 2


def test_plan_sources_and_validation() -> None:
    assert plan_threads(workers=1, local_processes=1, cpus=16, env={}) == ThreadPlan(16, 1, 1, 8, 8, "auto")
    assert plan_threads(3, None, workers=1, cpus=16, env={}).torch_threads == 3
    omp = plan_threads(workers=1, cpus=16, env={"OMP_NUM_THREADS": "5"})
    assert (omp.torch_threads, omp.source) == (5, "OMP_NUM_THREADS")
    assert plan_threads(4, 2, cpus=16, env={}).interop_threads == 2
    with pytest.raises(ValueError, match="runtime.torch_threads"):
        plan_threads(0, cpus=4, env={})
    with pytest.raises(ValueError, match="runtime.interop_threads"):
        plan_threads(None, 0, cpus=4, env={})


def test_cgroup_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "cpu.max"
    assert cgroup_cpu_limit(f) is None  # absent: no quota
    f.write_text("max 100000\n")
    assert cgroup_cpu_limit(f) is None
    f.write_text("150000 100000\n")
    assert cgroup_cpu_limit(f) == 2
    monkeypatch.setattr(threads, "CGROUP_CPU_MAX", f)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(16)))
    assert REAL_AVAILABLE_CPUS() == 2
    f.write_text("max 100000\n")
    assert REAL_AVAILABLE_CPUS() == 16


def test_apply_and_from_config(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        plan = apply_threads(ThreadPlan(4, 0, 1, 1, torch.get_num_interop_threads(), "config"))
        assert torch.get_num_threads() == 1 and plan.torch_threads == 1
        clean_env.setattr(threads, "available_cpus", lambda: 12)
        cfg = compose_cfg("train", ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                                    "training.num_workers=2"], tmp_path)
        plan = configure_threads_from_config(cfg, "training.num_workers")
        assert (plan.cpus, plan.workers, plan.local_processes, plan.torch_threads, plan.source) == (12, 2, 2, 2, "auto")
        assert torch.get_num_threads() == 2
        cfg.runtime.torch_threads = 3
        assert configure_threads_from_config(cfg, "training.num_workers").torch_threads == 3
        ev = compose_cfg("evaluate", [], tmp_path)  # no runtime block: auto, extract.num_workers=1
        plan = configure_threads_from_config(ev, "extract.num_workers")
        assert (plan.workers, plan.local_processes, plan.torch_threads) == (1, 1, 6)
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- a real launcher run
@pytest.mark.slow
@pytest.mark.e2e
def test_single_job_through_the_submitit_launcher(tmp_path: Path) -> None:
    """``-m`` with one job and a submitit launcher runs that job in a fresh process (submitit's
    local executor, the same pickled job a SLURM task runs) and the sweep summary is written."""
    from e2e_utils import run_script, speech_emodb_tree

    root = speech_emodb_tree(tmp_path / "emodb", speakers=("03", "08", "09"), texts=("a01", "a02"), seconds=0.8)
    proc = run_script("evaluate.py", "-m", "hydra/launcher=submitit_local", "experiment=egemaps_baseline",
                      f"data.root={root}", "logger=none", tmp=tmp_path)
    (summary,) = (tmp_path / "outputs" / "evaluate" / "multiruns").glob("*/summary.csv")
    assert "Sweep summary (1 runs)" in proc.stdout and (summary.parent / "0" / "results.json").is_file()
    assert list(summary.parent.glob(".submitit/*/*_result.pkl"))  # it ran as a submitit job
