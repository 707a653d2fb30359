"""Torch threads per process, so that all processes of a run (DDP ranks, DataLoader workers)
never run more threads than the cores they share: small-op PyTorch stalls once they do.

The rule, its inputs and why ``OMP_NUM_THREADS`` is set too: docs/cluster.md, "The
thread-count rule". Config: ``runtime.torch_threads`` / ``runtime.interop_threads`` (null = auto).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)

#: set beside OMP_NUM_THREADS when this module wrote it, so a value of ours is not taken for the user's
OWN_MARK = "DEEPTALK_OMP_NUM_THREADS_SET"
#: cgroup v2 CPU quota of this process's container ("max 100000" = none, "200000 100000" = 2 CPUs)
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class ThreadPlan:
    """What :func:`plan_threads` decided, and from what (logged)."""

    cpus: int
    workers: int
    local_processes: int
    torch_threads: int
    interop_threads: int
    source: str  # "config" | "OMP_NUM_THREADS" | "auto"


def auto_thread_count(cpus: int, workers: int = 0, local_world_size: int = 1) -> int:
    """``max(1, cpus // (local processes x (workers + 1)))``: each process and each of its
    DataLoader workers keeps a core busy."""
    for name, value, least in (("cpus", cpus, 1), ("workers", workers, 0), ("local_world_size", local_world_size, 1)):
        if value < least:
            raise ValueError(f"{name} must be >= {least}, got {value}")
    return max(1, cpus // (local_world_size * (workers + 1)))


def cgroup_cpu_limit(path: Path | None = None) -> int | None:
    """CPUs a cgroup v2 quota allows (rounded up), or None without a quota (or on cgroup v1)."""
    try:
        quota, period = (path or CGROUP_CPU_MAX).read_text().split()[:2]
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError, ZeroDivisionError):
        return None


def available_cpus() -> int:
    """Cores this process may run on: its affinity (taskset, SLURM, cpusets) capped by a cgroup
    quota (``docker --cpus``), which the affinity does not show."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, cgroup_cpu_limit() or cpus))


def _first_int(value: str | None) -> int | None:
    """``"4"`` -> 4, SLURM's ``"4(x2),2"`` -> 4; None when absent or not a positive number."""
    head = (value or "").split(",")[0].split("(")[0].strip()
    return int(head) if head.isdigit() and int(head) > 0 else None


def _slurm_srun_task(env: Mapping[str, str]) -> bool:
    """A task that srun started (what Lightning's SLURMEnvironment takes over), not a SLURM shell."""
    return "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive")


def devices_per_node(trainer_cfg: Mapping[str, Any] | None) -> int:
    """Processes a Trainer config starts per node: ``devices`` as an int, a list or "0,1" of ids,
    or "auto"/-1 (every visible GPU on a GPU run, else 1)."""
    devices = (trainer_cfg or {}).get("devices", 1)
    if isinstance(devices, str) and "," in devices:
        devices = [d for d in devices.split(",") if d.strip()]
    if hasattr(devices, "__len__") and not isinstance(devices, str):  # a list (or ListConfig) of ids
        return max(1, len(devices))
    if devices in ("auto", -1, "-1"):
        if str((trainer_cfg or {}).get("accelerator", "auto")) not in ("gpu", "cuda", "auto"):
            return 1
        try:
            import torch

            return max(1, torch.cuda.device_count())
        except Exception:  # noqa: BLE001  (no usable CUDA: one process)
            return 1
    try:
        return max(1, int(devices))
    except (TypeError, ValueError):
        return 1


def local_world_size(trainer_cfg: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Processes of this run on this node: torchrun's ``LOCAL_WORLD_SIZE``, SLURM's tasks per
    node, else what the Trainer config starts."""
    env = os.environ if env is None else env
    n = _first_int(env.get("LOCAL_WORLD_SIZE"))
    if n is None and _slurm_srun_task(env):
        n = _first_int(env.get("SLURM_NTASKS_PER_NODE")) or _first_int(env.get("SLURM_TASKS_PER_NODE"))
    return n or devices_per_node(trainer_cfg)


def processes_sharing(cpus: int, local_processes: int, env: Mapping[str, str] | None = None) -> int:
    """How many processes share the ``cpus`` this one sees: 1 when SLURM bound the task to its own
    ``--cpus-per-task`` cores (the affinity already is its share)."""
    env = os.environ if env is None else env
    per_task = _first_int(env.get("SLURM_CPUS_PER_TASK"))
    return 1 if _slurm_srun_task(env) and per_task is not None and cpus <= per_task else local_processes


def plan_threads(torch_threads: int | None = None, interop_threads: int | None = None, workers: int = 0,
                 local_processes: int = 1, cpus: int | None = None, env: Mapping[str, str] | None = None) -> ThreadPlan:
    """The counts for this process: the config's, else an ``OMP_NUM_THREADS`` the user set, else the rule."""
    env = os.environ if env is None else env
    cpus = available_cpus() if cpus is None else int(cpus)
    workers = int(workers or 0)
    for key, value in (("torch_threads", torch_threads), ("interop_threads", interop_threads)):
        if value is not None and int(value) < 1:
            raise ValueError(f"runtime.{key} must be >= 1 or null (auto), got {value}")
    users_omp = _first_int(env.get("OMP_NUM_THREADS")) if env.get(OWN_MARK) != env.get("OMP_NUM_THREADS") else None
    if torch_threads is not None:
        intra, source = int(torch_threads), "config"
    elif users_omp is not None:
        intra, source = users_omp, "OMP_NUM_THREADS"
    else:
        intra, source = auto_thread_count(cpus, workers, processes_sharing(cpus, local_processes, env)), "auto"
    interop = int(interop_threads) if interop_threads is not None else intra
    return ThreadPlan(cpus, workers, local_processes, intra, interop, source)


def apply_threads(plan: ThreadPlan, interop_explicit: bool = False) -> ThreadPlan:
    """Set torch's counts and ``OMP_NUM_THREADS`` (which keeps Lightning's launchers from resetting
    them and is what child processes inherit). The inter-op count can be set once per process:
    later (a second run in one interpreter) it is kept, with a warning if the config asked."""
    import torch

    torch.set_num_threads(plan.torch_threads)
    if plan.source == "OMP_NUM_THREADS":  # the user's own value: children keep reading it as theirs
        os.environ.pop(OWN_MARK, None)
    else:
        os.environ["OMP_NUM_THREADS"] = os.environ[OWN_MARK] = str(plan.torch_threads)
    if torch.get_num_interop_threads() != plan.interop_threads:
        try:
            torch.set_num_interop_threads(plan.interop_threads)
        except RuntimeError as exc:
            (log.warning if interop_explicit else log.debug)("runtime.interop_threads=%d not applied (%s); keeping %d",
                                                             plan.interop_threads, exc, torch.get_num_interop_threads())
    log.info("torch threads: %d intra-op, %d inter-op (%s: %d cpus, %d DataLoader workers, %d local processes)",
             torch.get_num_threads(), torch.get_num_interop_threads(), plan.source, plan.cpus, plan.workers,
             plan.local_processes)
    return plan


def configure_threads_from_config(cfg: Any, workers_key: str) -> ThreadPlan:
    """Plan and apply this process's counts from a run config: ``runtime.*`` (absent = auto), the
    DataLoader workers at ``workers_key`` and the processes ``cfg.trainer`` starts."""
    from omegaconf import OmegaConf

    runtime = OmegaConf.select(cfg, "runtime", default=None) or {}
    workers = int(OmegaConf.select(cfg, workers_key, default=0) or 0)
    trainer_cfg = {k: OmegaConf.select(cfg, f"trainer.{k}", default=d) for k, d in (("devices", 1), ("accelerator", "auto"))}
    interop = runtime.get("interop_threads")
    plan = plan_threads(runtime.get("torch_threads"), interop, workers, local_world_size(trainer_cfg))
    return apply_threads(plan, interop_explicit=interop is not None)
