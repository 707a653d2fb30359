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
from e2e_utils import speech_emodb_tree, speech_kaldi_tree
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


def _kill_and_expect_gone(parent: subprocess.Popen, child: int) -> None:
    """SIGKILL ``parent``; ``child`` must be gone within 10 s."""
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while _alive(child) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


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
    _kill_and_expect_gone(parent, child)
    assert die_with_parent.__name__  # importable without side effects in the test process


def test_a_rank_started_like_lightning_dies_with_rank_zero(tmp_path):
    """Lightning's launcher re-runs the entry script with ``LOCAL_RANK=k``: that child dies with
    rank 0; a process with ``LOCAL_RANK`` but another parent (torchrun, srun) is left alone."""
    script = tmp_path / "entry.py"
    script.write_text("import os, subprocess, sys, time\n"
                      "from deeptalk_ser.utils.processes import die_with_launching_rank\n"
                      "if os.environ.get('LOCAL_RANK', '0') == '0':\n"
                      "    child = subprocess.Popen([sys.executable, sys.argv[0]], env={**os.environ, 'LOCAL_RANK': '1'})\n"
                      "    print(child.pid, flush=True); time.sleep(60)\n"
                      "else:\n"
                      "    print('asked', die_with_launching_rank(), flush=True); time.sleep(60)\n")
    env = {**os.environ, "LOCAL_RANK": "0"}
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    child = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == "asked True"
    _kill_and_expect_gone(parent, child)
    other = subprocess.run([sys.executable, "-c", "from deeptalk_ser.utils.processes import die_with_launching_rank as d;"
                            " print(d())"], env={**os.environ, "LOCAL_RANK": "1"}, capture_output=True, text=True)
    assert other.stdout.strip() == "False"  # its parent (pytest) runs another script


def _sigkill_once_children_run(cmd: list[str], env: dict[str, str], n: int, what: str,
                               timeout: float = 180) -> None:
    """Start ``cmd``, wait until it has ``n`` live children, SIGKILL it and assert that every
    one of them is gone within 15 s (survivors are killed here, then reported)."""
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + timeout
        workers: list[int] = []
        while time.time() < deadline and proc.poll() is None:
            workers = [c for c in _children(proc.pid) if _alive(c)]
            if len(workers) >= n:
                break
            time.sleep(0.1)
        if len(workers) < n:
            pytest.fail(f"{cmd[1]} never started its {n} {what} (exit code {proc.poll()})")
        time.sleep(1.0)  # let them get busy
        workers = [c for c in _children(proc.pid) if _alive(c)]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 15
        while any(_alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.2)
        left = [w for w in workers if _alive(w)]
        for w in left:
            os.kill(w, signal.SIGKILL)
        assert not left, f"{what} {left} outlived the killed {Path(cmd[1]).name}"
    finally:
        if proc.poll() is None:
            proc.kill()


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "DEEPTALK_CACHE_DIR": str(tmp_path / "cache"), "WANDB_MODE": "offline",
            "PYTHONWARNINGS": "ignore"}


@pytest.mark.e2e
def test_sigkill_of_extract_leaves_no_worker(tmp_path):
    corpus = speech_emodb_tree(tmp_path / "emodb", seconds=3.0)
    _sigkill_once_children_run([sys.executable, str(PROJECT_ROOT / "extract.py"), f"paths.log_dir={tmp_path / 'out'}",
                                "encoder=deeptalk", f"data.root={corpus}", "extract.num_workers=2"],
                               _env(tmp_path), 2, "DataLoader worker(s)")


@pytest.mark.e2e
def test_sigkill_of_training_store_preparation_leaves_no_worker(tmp_path):
    """``train.py prepare_only=true`` with 2 preparation processes on 2 h of audio (4 training
    speakers x 60 linked 30 s files, about 5 s of work): its pool workers die with it."""
    corpus = speech_kaldi_tree(tmp_path / "speechocean762", n_speakers=6, n_utts=1, sr=16000, seconds=30.0, links=60)
    _sigkill_once_children_run([sys.executable, str(PROJECT_ROOT / "train.py"), f"paths.log_dir={tmp_path / 'out'}",
                                "data=speechocean762", f"data.root={corpus}", "training.val_speakers=2",
                                "prepare_only=true", "train_store.num_workers=2", "train_store.shard_size=4"],
                               _env(tmp_path), 2, "training-store worker(s)")
