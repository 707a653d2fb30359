"""How many intra-op (and inter-op) threads PyTorch may use in this process, so that the threads of
all processes of a run never exceed the cores they share.

Why: PyTorch's default is one intra-op thread per core it sees, in *every* process. A run is
several processes on the same cores: DataLoader workers (PyTorch pins each to one thread, but
each keeps a core busy decoding audio and running the front end) and, under DDP, one trainer or
extraction process per device of the node. Small-op PyTorch (a GRU step, a 40x200 mel frame, the
DeepTalk network on short windows) spends its time in thread hand-offs, and those spin or stall
when more threads than cores are runnable: the extraction fast path measured 16x the reference's
speed on a quiet 2-core machine, and only 2.4x while another process shared the cores.
So the automatic count is::

    threads = max(1, cpus // (local_processes * (workers + 1)))

with ``cpus`` the cores this process may run on (its CPU affinity, capped by a cgroup CPU quota),
``workers`` the DataLoader workers of each process and ``local_processes`` the processes of this
run on this node (``LOCAL_WORLD_SIZE``, SLURM's tasks per node, or ``trainer.devices``). When the
launcher already bound this process to its own cores (SLURM ``--cpus-per-task`` with task
binding), the affinity *is* this process's share and is not divided again.

The count is also written to ``OMP_NUM_THREADS``: Lightning's DDP and SLURM launchers otherwise
reset every process to ``cpus // processes`` when ``fit``/``predict`` starts (ignoring the
DataLoader workers, and dividing a SLURM task's own cores a second time), and child processes
(DDP ranks that Lightning starts, decoding pools) inherit the same budget.

Config (``conf/train.yaml`` ``runtime:``; ``+runtime.torch_threads=N`` for evaluate/extract):
``torch_threads`` (null = the rule above, or ``OMP_NUM_THREADS`` when the environment sets it)
and ``interop_threads`` (null = the same count; the inter-op pool only runs ``torch.jit.fork``
style work, but may not outgrow the intra-op budget either).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)

#: set beside OMP_NUM_THREADS when this module wrote it, so a value of ours is not taken for the user's
OWN_MARK = "DEEPTALK_OMP_NUM_THREADS_SET"
#: cgroup v2 CPU quota of this process's container ("max 100000" = none, "200000 100000" = 2 CPUs)
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class ThreadPlan:
    """What :func:`configure_threads` decided, and from what (logged and kept in summaries)."""

    cpus: int
    workers: int
    local_processes: int
    torch_threads: int
    interop_threads: int
    source: str  # "config" | "OMP_NUM_THREADS" | "auto"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def auto_thread_count(cpus: int, workers: int = 0, local_world_size: int = 1) -> int:
    """Intra-op threads per process: the cores divided among the node's processes of this run and,
    within each, among the process itself and its DataLoader workers; at least 1."""
    if cpus < 1:
        raise ValueError(f"cpus must be >= 1, got {cpus}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if local_world_size < 1:
        raise ValueError(f"local_world_size must be >= 1, got {local_world_size}")
    return max(1, cpus // (local_world_size * (workers + 1)))


def cgroup_cpu_limit(path: Path | None = None) -> int | None:
    """CPUs a cgroup v2 quota allows (rounded up), or None without a quota (or on cgroup v1)."""
    try:
        quota, period = (CGROUP_CPU_MAX if path is None else path).read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def available_cpus() -> int:
    """Cores this process may run on: its CPU affinity (``taskset``, SLURM, containers' cpusets),
    capped by a cgroup CPU quota (``docker --cpus``), which the affinity does not show."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    return max(1, min(cpus, quota) if quota else cpus)


def _first_int(value: str | None) -> int | None:
    """``"4"`` -> 4, SLURM's ``"4(x2),2"`` -> 4; None when absent or not a number."""
    if not value:
        return None
    head = value.split(",")[0].split("(")[0].strip()
    return int(head) if head.isdigit() and int(head) > 0 else None


def _slurm_srun_task(env: Mapping[str, str]) -> bool:
    """A task that srun started (the case Lightning's SLURMEnvironment takes over)."""
    return "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive")


def devices_per_node(trainer_cfg: Mapping[str, Any] | None) -> int:
    """Processes a Lightning Trainer config starts on each node (``devices``: an int, a list of
    ids, or "auto"/-1 = every visible GPU for a GPU run, else 1)."""
    if not trainer_cfg:
        return 1
    devices = trainer_cfg.get("devices", 1)
    if hasattr(devices, "__len__") and not isinstance(devices, str):  # a list (or ListConfig) of device ids
        return max(1, len(devices))
    if isinstance(devices, str) and "," in devices:  # "0,1"
        return max(1, len([d for d in devices.split(",") if d.strip()]))
    if devices in ("auto", -1, "-1"):
        if str(trainer_cfg.get("accelerator", "auto")) in ("gpu", "cuda", "auto"):
            try:
                import torch

                return max(1, torch.cuda.device_count())
            except Exception:  # noqa: BLE001  (no usable CUDA: one process)
                return 1
        return 1
    try:
        return max(1, int(devices))
    except (TypeError, ValueError):
        return 1


def local_world_size(trainer_cfg: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Processes of this run on this node: the launcher's word first (torchrun's
    ``LOCAL_WORLD_SIZE``, SLURM's tasks per node), else what the Trainer config will start."""
    env = os.environ if env is None else env
    n = _first_int(env.get("LOCAL_WORLD_SIZE"))
    if n is None and _slurm_srun_task(env):
        n = _first_int(env.get("SLURM_NTASKS_PER_NODE")) or _first_int(env.get("SLURM_TASKS_PER_NODE"))
    return n if n is not None else devices_per_node(trainer_cfg)


def processes_sharing(cpus: int, local_processes: int, env: Mapping[str, str] | None = None) -> int:
    """How many of the node's processes share the ``cpus`` this one sees: 1 when SLURM bound the
    task to its own ``--cpus-per-task`` cores (the affinity is already this task's share)."""
    env = os.environ if env is None else env
    per_task = _first_int(env.get("SLURM_CPUS_PER_TASK"))
    if _slurm_srun_task(env) and per_task is not None and cpus <= per_task:
        return 1
    return local_processes


def plan_threads(torch_threads: int | None = None, interop_threads: int | None = None, workers: int = 0,
                 local_processes: int = 1, cpus: int | None = None, env: Mapping[str, str] | None = None) -> ThreadPlan:
    """The thread counts for this process, without applying them (see the module docstring)."""
    env = os.environ if env is None else env
    cpus = available_cpus() if cpus is None else int(cpus)
    workers = int(workers or 0)
    if torch_threads is not None:
        if int(torch_threads) < 1:
            raise ValueError(f"runtime.torch_threads must be >= 1 or null (auto), got {torch_threads}")
        intra, source = int(torch_threads), "config"
    elif _first_int(env.get("OMP_NUM_THREADS")) is not None and env.get(OWN_MARK) != env.get("OMP_NUM_THREADS"):
        intra, source = _first_int(env.get("OMP_NUM_THREADS")), "OMP_NUM_THREADS"
    else:
        intra = auto_thread_count(cpus, workers, processes_sharing(cpus, local_processes, env))
        source = "auto"
    if interop_threads is not None and int(interop_threads) < 1:
        raise ValueError(f"runtime.interop_threads must be >= 1 or null (= torch_threads), got {interop_threads}")
    interop = int(interop_threads) if interop_threads is not None else intra
    return ThreadPlan(cpus=cpus, workers=workers, local_processes=local_processes, torch_threads=int(intra),
                      interop_threads=interop, source=source)


def apply_threads(plan: ThreadPlan, interop_explicit: bool = False) -> ThreadPlan:
    """Set torch's intra-op and inter-op thread counts from ``plan``.

    The inter-op count can only be set once per process, before any inter-op work: when that moment
    has passed (a second run in the same interpreter), the current value is kept, with a warning
    only if the config asked for a count explicitly."""
    import torch

    torch.set_num_threads(plan.torch_threads)
    # Lightning's launchers leave the thread count alone only when OMP_NUM_THREADS is set
    if plan.source == "OMP_NUM_THREADS":  # the user's own value: children keep reading it as theirs
        os.environ.pop(OWN_MARK, None)
    else:
        os.environ["OMP_NUM_THREADS"] = os.environ[OWN_MARK] = str(plan.torch_threads)
    if torch.get_num_interop_threads() != plan.interop_threads:
        try:
            torch.set_num_interop_threads(plan.interop_threads)
        except RuntimeError as exc:
            (log.warning if interop_explicit else log.debug)(
                "runtime.interop_threads=%d not applied (%s); keeping %d", plan.interop_threads, exc,
                torch.get_num_interop_threads())
    log.info("torch threads: %d intra-op, %d inter-op (%s: %d cpus, %d DataLoader workers, %d local processes)",
             torch.get_num_threads(), torch.get_num_interop_threads(), plan.source, plan.cpus, plan.workers,
             plan.local_processes)
    return plan


def configure_threads(torch_threads: int | None = None, interop_threads: int | None = None, workers: int = 0,
                      local_processes: int | None = None, trainer_cfg: Mapping[str, Any] | None = None) -> ThreadPlan:
    """Plan and apply the thread counts of this process; ``local_processes`` defaults to
    :func:`local_world_size` of the environment and ``trainer_cfg``."""
    n_local = local_world_size(trainer_cfg) if local_processes is None else int(local_processes)
    plan = plan_threads(torch_threads, interop_threads, workers, n_local)
    return apply_threads(plan, interop_explicit=interop_threads is not None)


def configure_threads_from_config(cfg: Any, workers_key: str) -> ThreadPlan:
    """:func:`configure_threads` from a run config: ``runtime.torch_threads`` /
    ``runtime.interop_threads`` (absent = auto), the DataLoader workers at ``workers_key``
    (``training.num_workers``, ``extract.num_workers``) and the processes ``cfg.trainer`` starts."""
    from omegaconf import OmegaConf

    runtime = OmegaConf.select(cfg, "runtime", default=None) or {}
    workers = OmegaConf.select(cfg, workers_key, default=0) or 0
    trainer_cfg = {k: OmegaConf.select(cfg, f"trainer.{k}", default=d) for k, d in (("devices", 1), ("accelerator", "auto"))}
    return configure_threads(runtime.get("torch_threads"), runtime.get("interop_threads"), int(workers),
                             trainer_cfg=trainer_cfg)
