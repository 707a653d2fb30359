"""Child processes that never outlive their run.

A ``kill -9`` of an entry script gives its DataLoader workers no chance to be told: PyTorch's
watchdog only notices a dead parent between items, and a worker blocked on a full result pipe
never does (one was seen alive 13 minutes after its run was killed). On Linux the kernel can
deliver a signal to a process when its parent dies (``prctl(PR_SET_PDEATHSIG)``); every
DataLoader of ours starts its workers with :func:`worker_init`, which asks for that.
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
