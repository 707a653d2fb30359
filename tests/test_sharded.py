"""The sharded-resumable-locked mechanism both stores use (``deeptalk_ser.utils.sharded``); the
stores' own behaviour on top of it is tested in test_distributed_extraction.py (embedding store)
and test_train_store.py (training store)."""

from __future__ import annotations

import errno
import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

from deeptalk_ser.utils import sharded
from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.utils.sharded import (ShardsIncomplete, check_coverage, finished_shards, matching_json, replace_dir,
                                        write_shard_file, writer_lock)


def _parse(name: str) -> int | None:
    return int(name[len("s"):-len(".txt")]) if name.startswith("s") and name.endswith(".txt") else None


def _check(k: int, path: Path) -> str:
    text = path.read_text()
    if text != f"shard {k}":
        raise ValueError(f"holds {text!r}")
    return text


def test_write_shard_file_is_all_or_nothing(tmp_path: Path) -> None:
    assert write_shard_file(tmp_path / "s1.txt", lambda f: f.write(b"shard 1")).read_text() == "shard 1"

    def half(f) -> None:
        f.write(b"shard")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space") as info:
        write_shard_file(tmp_path / "s2.txt", half)
    assert info.value.filename == str(tmp_path / "s2.txt")  # the shard meant, not its temporary name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s1.txt"]


def test_finished_shards_skips_leftovers_and_invalid_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for k in (0, 2):
        (tmp_path / f"s{k}.txt").write_text(f"shard {k}")
    (tmp_path / "s1.txt").write_text("shard 9")              # a foreign or truncated shard
    (tmp_path / ".s3.txt.123.tmp").write_text("shard 3")     # a write cut by a kill
    (tmp_path / "notes.md").write_text("not a shard")
    with caplog.at_level(logging.WARNING):
        assert finished_shards(tmp_path, _parse, _check) == {0: "shard 0", 2: "shard 2"}
    assert "s1.txt" in caplog.text
    assert len(list(tmp_path.iterdir())) == 5  # without clean nothing is deleted
    assert finished_shards(tmp_path, _parse, _check, clean=True) == {0: "shard 0", 2: "shard 2"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.md", "s0.txt", "s2.txt"]
    assert finished_shards(tmp_path / "absent", _parse, _check) == {}


def test_a_shard_held_by_two_files_counts_once(tmp_path: Path) -> None:
    """Two ranks may both have written shard k after a change of world size: the first by name wins."""
    (tmp_path / "a-0").write_text("first")
    (tmp_path / "b-0").write_text("second")
    assert finished_shards(tmp_path, lambda n: int(n[2:]), lambda k, p: p.read_text()) == {0: "first"}


def test_check_coverage_names_missing_and_repeated_items() -> None:
    names = np.array([f"u{i}" for i in range(5)])
    check_coverage(names, [np.array([0, 1]), np.array([2]), np.array([3, 4])])
    with pytest.raises(ShardsIncomplete, match=r"2 of 5 utterances are in no finished shard .*\['u2', 'u4'\]"):
        check_coverage(names, [np.array([0, 1]), np.array([3])], "utterances")
    with pytest.raises(ShardsIncomplete, match=r"1 of 5 items are in more than one shard: \['u1'\]"):
        check_coverage(names, [np.array([0, 1, 2]), np.array([1, 3, 4])])


def test_replace_dir_keeps_the_old_entry_until_the_new_one_is_whole(tmp_path: Path) -> None:
    entry = tmp_path / "entry"
    with replace_dir(entry, "entry") as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with replace_dir(entry, "entry") as tmp:
            (tmp / "a").write_text("2")
            raise RuntimeError("killed half-way")
    assert (entry / "a").read_text() == "1" and [p.name for p in tmp_path.iterdir()] == ["entry"]
    with replace_dir(entry, "entry") as tmp:
        (tmp / "b").write_text("3")
    assert [p.name for p in entry.iterdir()] == ["b"] and [p.name for p in tmp_path.iterdir()] == ["entry"]


def test_matching_json_only_for_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "meta.json"
    assert matching_json(path, {"key": 1}) is None  # absent
    path.write_text(json.dumps({"key": {"shape": [2, 3]}, "n": 4}))
    assert matching_json(path, {"key": {"shape": (2, 3)}}) == {"key": {"shape": [2, 3]}, "n": 4}  # as stored: JSON
    assert matching_json(path, {"key": {"shape": (2, 4)}}) is None
    assert matching_json(path, {"key": {"shape": (2, 3)}, "n": 5}) is None
    path.write_text('{"key": ')  # cut by a kill
    assert matching_json(path, {"key": 1}) is None


def test_writer_lock_waits_for_the_other_writer(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lock_file = tmp_path / "cache" / ".entry.lock"
    lock_file.parent.mkdir()
    other = FileLock(str(lock_file))
    other.acquire()
    order: list[str] = []

    def second() -> None:
        with writer_lock(lock_file, tmp_path / "cache" / "entry", "entry"):
            order.append("second")

    with caplog.at_level(logging.WARNING):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first done")
        other.release()
        t.join(10)
    assert order == ["first done", "second"]
    assert "another run is writing" in caplog.text and str(tmp_path / "cache" / "entry") in caplog.text


def test_writer_lock_on_a_read_only_cache_says_what_needs_write_access(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    class ReadOnlyLock:
        def __init__(self, path: str) -> None:
            pass

        def acquire(self, timeout: float = -1) -> None:
            raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(sharded, "FileLock", ReadOnlyLock)
    with pytest.raises(DataError, match=r"entry.*no finished thing here to reuse.*needs write access"):
        with writer_lock(tmp_path / ".entry.lock", tmp_path / "entry", "finished thing"):
            pass
