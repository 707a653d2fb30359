"""A ``kill -9`` of an entry script leaves no DataLoader worker behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deeptalk_ser.utils.processes import die_with_parent
from e2e_utils import speech_emodb_tree
from markers import PROJECT_ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        ppid = next((ln.split()[1] for ln in status.splitlines() if ln.startswith("PPid:")), None)
        if ppid == str(pid):
            out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return " Z " not in state + " "  # a zombie is dead, only not yet reaped


def test_die_with_parent_kills_an_orphan(tmp_path):
    """The mechanism itself: a grandchild that asked for it dies when its parent is killed."""
    code = ("import os, sys, time\n"
            "from deeptalk_ser.utils.processes import die_with_parent\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    die_with_parent(); time.sleep(60); os._exit(0)\n"
            "print(pid, flush=True); time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(0.5)
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while _alive(child) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(child)
    assert die_with_parent.__name__  # importable without side effects in the test process


@pytest.mark.e2e
def test_sigkill_of_extract_leaves_no_worker(tmp_path):
    corpus = speech_emodb_tree(tmp_path / "emodb", seconds=3.0)
    env = {**os.environ, "DEEPTALK_CACHE_DIR": str(tmp_path / "cache"), "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "extract.py"), f"paths.log_dir={tmp_path / 'out'}",
                             "encoder=deeptalk", f"data.root={corpus}", "extract.num_workers=2"],
                            cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        workers: list[int] = []
        while time.time() < deadline and proc.poll() is None:
            workers = [c for c in _children(proc.pid) if _alive(c)]
            if len(workers) >= 2:
                break
            time.sleep(0.2)
        if len(workers) < 2:
            pytest.fail(f"extract.py never started its 2 DataLoader workers (exit code {proc.poll()})")
        time.sleep(1.0)  # let them get busy
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 15
        while any(_alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.2)
        left = [w for w in workers if _alive(w)]
        for w in left:
            os.kill(w, signal.SIGKILL)
        assert not left, f"worker(s) {left} outlived the killed extract.py"
    finally:
        if proc.poll() is None:
            proc.kill()
