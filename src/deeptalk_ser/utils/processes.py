"""Child processes that never outlive their run.

A ``kill -9`` of an entry script gives its DataLoader workers no chance to be told: PyTorch's
watchdog only notices a dead parent between items, and a worker blocked on a full result pipe
never does (one was seen alive 13 minutes after its run was killed). On Linux the kernel can
deliver a signal to a process when its parent dies (``prctl(PR_SET_PDEATHSIG)``); every
DataLoader of ours starts its workers with :func:`worker_init`, which asks for that, and every
process pool (training-store preparation, VoxCeleb2 conversion) passes :func:`die_with_parent`
as its ``initializer``.

The signal comes when the *thread* that forked the worker exits, not the process. Our pools are
created, used and shut down by one call in one thread (workers are forked on ``submit``, never by
the pool's manager thread, as long as ``max_tasks_per_child`` is unset), and DataLoader workers
are started from the thread that iterates the loader, so no worker is killed while still in use.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent exits (Linux; elsewhere a
    no-op that returns False). If the parent is already gone, exit now."""
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent or parent == 1:  # the parent died before the request took effect
        os._exit(1)
    return True


def worker_init(worker_id: int) -> None:
    """``worker_init_fn`` for our DataLoaders: die with the parent, then Lightning's per-worker
    seeding when ``seed_everything(workers=True)`` asked for it (setting a ``worker_init_fn``
    replaces the one Lightning would have added)."""
    die_with_parent()
    if os.environ.get("PL_SEED_WORKERS") == "1":
        from lightning.fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)


def die_with_launching_rank() -> bool:
    """In a DDP rank that Lightning's launcher started (``LOCAL_RANK`` > 0, its parent running the
    same entry script), die with rank 0: a ``kill -9`` of the run otherwise leaves the other ranks
    waiting on a collective until the backend's timeout. Ranks that torchrun or srun start have
    another parent, which manages them itself, and are left alone."""
    try:
        if int(os.environ.get("LOCAL_RANK", "0") or 0) <= 0:
            return False
        parent_args = open(f"/proc/{os.getppid()}/cmdline", "rb").read().split(b"\0")
    except (ValueError, OSError):
        return False
    script = os.path.basename(sys.argv[0]).encode()
    if not script or script not in {os.path.basename(a) for a in parent_args}:
        return False
    return die_with_parent()
