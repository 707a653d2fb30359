"""One line, exit 1, nothing lost: ``train.py logger=none``, a read-only cache, a full disk and
invalid trainer values (issue 20, item 5).

The file-system faults are injected into the process (:class:`FileSystemFault`: writes under a
folder refused with EROFS, or a byte budget whose last write is cut short with ENOSPC), so the
tests run as root, where ``chmod a-w`` stops nothing, and in CI, which cannot mount. Entry
scripts get the fault through a ``sitecustomize`` on ``PYTHONPATH``. Where user namespaces allow
it, a real read-only bind mount and a real full tmpfs check the same (skipped otherwise).
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from e2e_utils import read_json, run_script, speech_emodb_tree, speech_kaldi_tree

TESTS = Path(__file__).resolve().parent
USER = {"HYDRA_FULL_ERROR": "0"}
TINY = ["data=speechocean762", "training.speakers_per_batch=3", "training.utterances_per_speaker=2",
        "training.crop_frames=60", "training.batches_per_epoch=2", "training.val_speakers=3", "logger=none",
        "train_store.num_workers=1"]
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


# ----------------------------------------------------------------------------- the injected faults


class FileSystemFault:
    """Writes under ``root`` fail as on a read-only mount (``free_bytes=None``: EROFS on every
    open for writing, mkdir, rename, unlink, chmod) or as on a disk with ``free_bytes`` left (the
    write that crosses it writes what fits, then fails with ENOSPC naming no file, like write(2)).
    Holds in this process and its forks; reads are untouched."""

    ENV = "DEEPTALK_TEST_FS_FAULT"

    def __init__(self, root: str | Path, free_bytes: int | None = None) -> None:
        self.root, self.free = os.path.realpath(root), free_bytes

    def env(self) -> dict[str, str]:
        """What a subprocess needs: the fault, and the ``sitecustomize`` that installs it."""
        path = os.pathsep.join(p for p in (str(_hook_dir()), os.environ.get("PYTHONPATH")) if p)
        return {self.ENV: json.dumps([self.root, self.free]), "PYTHONPATH": path}

    @classmethod
    def install_from_env(cls) -> None:
        if cls.ENV in os.environ:
            root, free = json.loads(os.environ[cls.ENV])
            cls(root, free).install()

    def install(self, setattr: Callable[[Any, str, Any], None] = setattr) -> None:
        """Patch the process (``monkeypatch.setattr`` in a test, plain ``setattr`` in a subprocess)."""
        real_open = io.open

        def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if not self._writes(file, mode):
                return real_open(file, mode, *args, **kwargs)
            if self.free is None:
                self._refuse(file)
            return _Metered(real_open(file, mode, *args, **kwargs), self)

        setattr(builtins, "open", open_)
        setattr(io, "open", open_)
        if self.free is not None:
            return
        real_os_open = os.open

        def os_open(path: Any, flags: int, *args: Any, dir_fd: int | None = None, **kwargs: Any) -> int:
            if flags & _WRITE_FLAGS and self._under(path, dir_fd):
                self._refuse(path)
            return real_os_open(path, flags, *args, dir_fd=dir_fd, **kwargs)

        setattr(os, "open", os_open)
        for name in ("mkdir", "unlink", "remove", "rmdir", "chmod", "replace", "rename"):
            setattr(os, name, self._guard(getattr(os, name), two_paths=name in ("replace", "rename")))

    def _guard(self, real: Callable[..., Any], two_paths: bool) -> Callable[..., Any]:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            paths = [(args[0], kwargs.get("dir_fd", kwargs.get("src_dir_fd")))]
            if two_paths:
                paths.append((args[1], kwargs.get("dst_dir_fd")))
            for path, dir_fd in paths:
                if self._under(path, dir_fd):
                    self._refuse(path)
            return real(*args, **kwargs)

        return guarded

    def _writes(self, file: Any, mode: str) -> bool:
        return bool(set(mode) & set("wax+")) and self._under(file)

    def _under(self, path: Any, dir_fd: int | None = None) -> bool:
        if isinstance(path, int):
            return False
        p = os.fsdecode(os.fspath(path))
        if dir_fd is not None and not os.path.isabs(p):
            p = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), p)
        p = os.path.abspath(p)
        return p == self.root or p.startswith(self.root + os.sep)

    @staticmethod
    def _refuse(path: Any) -> Any:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(os.fspath(path)))


class _Metered:
    """A file whose writes draw on the fault's free bytes."""

    def __init__(self, f: Any, fault: FileSystemFault) -> None:
        self._f, self._fault = f, fault

    def write(self, data: Any) -> int:
        size = len(data.encode()) if isinstance(data, str) else memoryview(data).nbytes
        left = self._fault.free or 0
        if size > left:
            self._fault.free = 0
            self._f.write(data[:left] if isinstance(data, str) else memoryview(data).cast("B")[:left])
            self._f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._fault.free = left - size
        return self._f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> "_Metered":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._f.close()

    def __iter__(self) -> Any:
        return iter(self._f)


def _hook_dir() -> Path:
    """A folder holding the ``sitecustomize`` that installs the fault named in the environment."""
    d = Path(tempfile.gettempdir()) / f"deeptalk-fs-fault-hook-{os.getuid()}"
    d.mkdir(parents=True, exist_ok=True)
    code = (f"import sys\nsys.path.insert(0, {str(TESTS)!r})\n"
            "from test_one_line_errors import FileSystemFault\nFileSystemFault.install_from_env()\n")
    hook = d / "sitecustomize.py"
    if not hook.is_file() or hook.read_text() != code:  # renamed into place: a starting run never reads half
        tmp = d / f".sitecustomize.{os.getpid()}"
        tmp.write_text(code)
        os.replace(tmp, hook)
    return d


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def kaldi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speech_kaldi_tree(tmp_path_factory.mktemp("kaldi") / "speechocean762", n_utts=3)


@pytest.fixture(scope="module")
def emodb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speech_emodb_tree(tmp_path_factory.mktemp("emodb") / "emodb", speakers=("03", "08"), texts=("a01",),
                             seconds=0.8)


def one_line_error(proc: subprocess.CompletedProcess, script: str, *needles: str) -> str:
    """The ``<script>: error: ...`` line of a run that exited 1 without a traceback."""
    assert proc.returncode == 1, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"{script}: error: ")]
    assert len(lines) == 1, proc.stderr[-4000:]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every entry under ``root`` with its size and mtime: a write anywhere changes it."""
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


def assert_nothing_half_written(root: Path) -> None:
    """No temporary file or folder is left, and every data file left is whole (parses or loads),
    a training-store shard with the json that marks it finished."""
    for p in root.rglob("*"):
        assert not (p.name.endswith(".tmp") or p.name.startswith(".tmp-")), f"left behind: {p}"
        if p.is_dir():
            continue
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".jsonl":
            [json.loads(ln) for ln in p.read_text().splitlines()]
        elif p.suffix in (".npy", ".npz"):
            np.load(p, allow_pickle=False)
            if p.parent.name == "shards" and p.suffix == ".npy":
                assert p.with_suffix(".json").is_file(), f"shard samples without their json: {p}"


# ----------------------------------------------------------------------------- no logger


@pytest.mark.e2e
def test_train_without_a_logger_trains_checkpoints_and_scores(kaldi: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_script("train.py", *TINY, f"data.root={kaldi}", "trainer.max_steps=2", f"hydra.run.dir={run}", tmp=tmp_path,
               env=USER)
    summary = read_json(run / "train_summary.json")
    assert summary["global_step"] == 2 and summary["best_val_eer"] is not None
    assert (run / "checkpoints" / "last.ckpt").is_file() and Path(summary["best_model_path"]).is_file()
    said = [ln for ln in (run / "train.log").read_text().splitlines() if "leaving out" in ln]
    assert len(said) == 1 and "LearningRateMonitor" in said[0] and "logger=none" in said[0]


# ----------------------------------------------------------------------------- invalid trainer values


@pytest.mark.e2e
@pytest.mark.parametrize("script,override,key", [  # every trainer key in-process: test_trainer_values_are_named_by_their_key
    ("train.py", "trainer.max_steps=-5", "trainer.max_steps"),
    pytest.param("train.py", "trainer.devices=0", "trainer.devices", marks=pytest.mark.slow),
    ("extract.py", "trainer.devices=0", "trainer.devices")])
def test_bad_trainer_value_is_one_line_before_any_preparation(kaldi: Path, emodb: Path, tmp_path: Path, script: str,
                                                              override: str, key: str) -> None:
    args = [*TINY, f"data.root={kaldi}"] if script == "train.py" else ["encoder=egemaps", f"data.root={emodb}"]
    proc = run_script(script, *args, override, f"hydra.run.dir={tmp_path / 'run'}", tmp=tmp_path, check=False, env=USER)
    one_line_error(proc, script, f"{script}: error: {key}: ")
    assert not (tmp_path / "cache").exists()  # no manifest, no store: refused before any preparation


@pytest.mark.parametrize("kwargs,key", [({"max_epochs": -3}, "trainer.max_epochs"), ({"precision": "64x"}, "trainer.precision"),
                                        ({"accelerator": "nonesuch"}, "trainer.accelerator"),
                                        ({"devices": 1, "num_nodes": 0}, "trainer.num_nodes"),
                                        ({"check_val_every_n_epoch": 0}, "trainer.check_val_every_n_epoch"),
                                        ({"max_steps": 10, "no_such_argument": 1}, "trainer.no_such_argument")])
def test_trainer_values_are_named_by_their_key(kwargs: dict[str, Any], key: str) -> None:
    from deeptalk_ser.runs.common import check_trainer
    from deeptalk_ser.utils.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        check_trainer({"accelerator": "cpu", "devices": 1, **kwargs})
    assert info.value.key == key
    check_trainer({"accelerator": "cpu", "devices": 1, "max_steps": 10, "precision": "32-true"})  # a valid one passes


# ----------------------------------------------------------------------------- a read-only cache


@pytest.mark.e2e
def test_read_only_cache_reuses_manifest_and_embeddings_and_says_what_needs_write_access(emodb: Path,
                                                                                          tmp_path: Path) -> None:
    args = ("extract.py", "encoder=egemaps", f"data.root={emodb}")
    run_script(*args, f"hydra.run.dir={tmp_path / 'first'}", tmp=tmp_path)
    cache = tmp_path / "cache"
    before = snapshot(cache)
    read_only = {**USER, **FileSystemFault(cache).env()}
    run_script(*args, f"hydra.run.dir={tmp_path / 'again'}", tmp=tmp_path, env=read_only)
    assert read_json(tmp_path / "again" / "extract_summary.json")["reused_store"]
    proc = run_script(*args, "extract.dtype=float16", f"hydra.run.dir={tmp_path / 'new'}", tmp=tmp_path, check=False,
                      env=read_only)
    one_line_error(proc, "extract.py", str(cache / "embeddings" / "emodb"), "no embedding store",
                   "needs write access", "paths.cache_dir=<a writable folder>")
    assert snapshot(cache) == before  # nothing was written, nothing lost


@pytest.mark.slow  # covered in the default run by a read-only cache: test_read_only_cache_reuses_manifest_and_embeddings_and_says_what_needs_write_access
@pytest.mark.e2e
def test_read_only_cache_trains_from_the_finished_training_store(kaldi: Path, tmp_path: Path) -> None:
    args = ("train.py", *TINY, f"data.root={kaldi}")
    run_script(*args, "prepare_only=true", f"hydra.run.dir={tmp_path / 'prepare'}", tmp=tmp_path)
    cache = tmp_path / "cache"
    before = snapshot(cache)
    read_only = {**USER, **FileSystemFault(cache).env()}
    run = tmp_path / "run"
    run_script(*args, "trainer.max_steps=2", f"hydra.run.dir={run}", tmp=tmp_path, env=read_only)
    assert read_json(run / "train_summary.json")["train_store"]["reused"]
    proc = run_script(*args, "training.val_speakers=4", f"hydra.run.dir={tmp_path / 'other'}", tmp=tmp_path,
                      check=False, env=read_only)  # other held-out speakers: another training store
    one_line_error(proc, "train.py", str(cache / "train_store" / "speechocean762"), "no finished training store",
                   "needs write access", "paths.cache_dir=")
    assert snapshot(cache) == before


def test_read_only_manifest_is_reused_without_its_lock(emodb: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from deeptalk_ser.data.corpora.emodb import EmoDBCorpus
    from deeptalk_ser.data.prepare import load_prepared
    from deeptalk_ser.utils.errors import DataError

    cache = tmp_path / "manifests"
    utts, _ = load_prepared(EmoDBCorpus(emodb), cache)
    before = snapshot(cache)
    FileSystemFault(tmp_path).install(monkeypatch.setattr)
    again, report = load_prepared(EmoDBCorpus(emodb), cache)
    assert report.reused and [u.id for u in again] == [u.id for u in utts]
    with pytest.raises(DataError, match="no up-to-date manifest .* needs write access"):
        load_prepared(EmoDBCorpus(emodb), tmp_path / "other")
    assert snapshot(cache) == before


# ----------------------------------------------------------------------------- a full disk


@pytest.mark.e2e
@pytest.mark.parametrize("script,under,stage", [
    pytest.param("extract.py", "manifests", "prepare", marks=pytest.mark.slow),  # the same stage() wrapper as the others
    ("extract.py", "embeddings", "extraction"),
    ("train.py", "train_store", "training store")])
def test_full_disk_is_one_line_naming_file_and_stage_and_leaves_nothing_half_written(
        kaldi: Path, emodb: Path, tmp_path: Path, script: str, under: str, stage: str) -> None:
    cache = tmp_path / "cache"
    args = [*TINY, f"data.root={kaldi}"] if script == "train.py" else ["encoder=egemaps", f"data.root={emodb}"]
    proc = run_script(script, *args, f"hydra.run.dir={tmp_path / 'run'}", tmp=tmp_path, check=False,
                      env={**USER, **FileSystemFault(cache / under, free_bytes=1000).env()})
    line = one_line_error(proc, script, f"{script}: error: {cache / under}", f"disk full during {stage}",
                          "No space left on device", "paths.cache_dir=<a folder on another disk>")
    assert ".tmp" not in line  # the file meant, not its temporary name
    assert_nothing_half_written(cache)


def test_full_disk_in_results_or_outside_any_stage_is_still_one_line(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from deeptalk_ser.utils.errors import RUN_DIR, DataError, stage, user_error_in
    from deeptalk_ser.utils.io import write_json_atomic

    FileSystemFault(tmp_path, free_bytes=10).install(monkeypatch.setattr)
    results = {"ua": [0.5] * 100}
    with pytest.raises(DataError) as info:
        with stage("results", tmp_path, RUN_DIR):
            write_json_atomic(tmp_path / "results.json", results)
    assert str(info.value).startswith(f"{tmp_path / 'results.json'}: disk full during results")
    assert "hydra.run.dir=" in str(info.value)
    with pytest.raises(OSError) as raw:
        write_json_atomic(tmp_path / "other.json", results)
    user = user_error_in(raw.value)
    assert isinstance(user, DataError) and str(user).startswith(f"{tmp_path / 'other.json'}: disk full")
    assert list(tmp_path.iterdir()) == []  # no temporary file left


def test_refused_write_in_a_stage_is_one_line_naming_the_setting(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from deeptalk_ser.utils.errors import RUN_DIR, DataError, stage
    from deeptalk_ser.utils.io import write_json_atomic

    (tmp_path / "run").mkdir()
    FileSystemFault(tmp_path / "run").install(monkeypatch.setattr)
    with pytest.raises(DataError) as info:
        with stage("results", tmp_path / "run", RUN_DIR):
            write_json_atomic(tmp_path / "run" / "results.json", {"ua": 0.5})
    assert str(info.value).startswith(f"{tmp_path / 'run'}")
    assert "read-only file system during results: set hydra.run.dir=<a writable folder>" in str(info.value)


# ----------------------------------------------------------------------------- real mounts, where permitted


def _can_mount(tmp: Path) -> bool:
    """Whether this machine lets a user namespace mount a tmpfs and a read-only bind (root in a
    container often can; CI often cannot)."""
    if shutil.which("unshare") is None:
        return False
    probe = tmp / "probe"
    probe.mkdir(exist_ok=True)
    cmd = 'mount -t tmpfs -o size=64k tmpfs "$0" && mount --bind -o ro "$0" "$0" && ! touch "$0/x" 2>/dev/null'
    return subprocess.run(["unshare", "-rm", "sh", "-c", cmd, str(probe)], capture_output=True).returncode == 0


def _python_under_mount(tmp: Path, monkeypatch: pytest.MonkeyPatch, mount: str, after: str = "") -> None:
    """Make ``run_script`` start Python in a new mount namespace after ``mount`` (then ``after``)."""
    if not _can_mount(tmp):
        pytest.skip("user namespaces cannot mount here (unshare -rm); the injected faults above cover it")
    inner = f'{mount} && {{ "$0" "$@"; rc=$?; {after or ":"}; exit $rc; }}'
    wrapper = tmp / "python-under-mount"
    wrapper.write_text(f'#!/bin/sh\nexec unshare -rm sh -c {shlex.quote(inner)} {shlex.quote(sys.executable)} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(wrapper))


@pytest.mark.e2e
@pytest.mark.slow
def test_real_read_only_bind_mount(emodb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ("extract.py", "encoder=egemaps", f"data.root={emodb}")
    run_script(*args, f"hydra.run.dir={tmp_path / 'first'}", tmp=tmp_path)
    cache = tmp_path / "cache"
    before = snapshot(cache)
    _python_under_mount(tmp_path, monkeypatch, f"mount --bind -o ro {shlex.quote(str(cache))} {shlex.quote(str(cache))}")
    run_script(*args, f"hydra.run.dir={tmp_path / 'again'}", tmp=tmp_path, env=USER)
    proc = run_script(*args, "extract.dtype=float16", f"hydra.run.dir={tmp_path / 'new'}", tmp=tmp_path, check=False,
                      env=USER)
    one_line_error(proc, "extract.py", "needs write access", "Read-only file system")
    assert snapshot(cache) == before


@pytest.mark.e2e
@pytest.mark.slow
def test_real_full_tmpfs(emodb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    q = shlex.quote(str(cache))
    _python_under_mount(tmp_path, monkeypatch, f"mount -t tmpfs -o size=24k tmpfs {q}",
                        after=f"find {q} \\( -name '*.tmp' -o -name '.tmp-*' \\) -printf 'LEFT BEHIND %p\\n' >&2")
    proc = run_script("extract.py", "encoder=egemaps", f"data.root={emodb}", f"hydra.run.dir={tmp_path / 'run'}",
                      tmp=tmp_path, check=False, env=USER)
    line = one_line_error(proc, "extract.py", str(cache), "disk full during", "No space left on device")
    assert "during prepare" in line or "during extraction" in line
    assert "LEFT BEHIND" not in proc.stderr
