"""Sharded, resumable extraction (``deeptalk_ser.embedding.extraction`` + ``shards``).

In-process tests use a tiny deterministic encoder and a one-process Lightning Trainer; the
end-to-end tests run ``extract.py`` in subprocesses on a generated EmoDB-layout corpus: one
process vs two DDP CPU processes (egemaps and deeptalk), SIGKILL mid-way + restart, and a bad
file in the middle (stop, then restart with ``data.on_error=skip``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.embedding.encoders.base import SpeakerEncoder
from deeptalk_ser.embedding.extraction import FrontendDataset, ShardWriter, embed_one, extract_or_reuse
from deeptalk_ser.embedding.shards import (ExtractionIncomplete, ShardPlan, choose_shard_size, merge_shards,
                                           scan_shards, shard_name, work_key)
from deeptalk_ser.embedding.store import EmbeddingStore, store_key
from deeptalk_ser.embedding.windowing import Windowing
from deeptalk_ser.utils.errors import AudioError
from deeptalk_ser.utils.io import stable_hash

SR = 8000
WIN = Windowing(window_s=0.5, hop_s=0.25)
UTT = Windowing(window_s=None)
CPU1 = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False}


class TinyEncoder(SpeakerEncoder):
    """[mean, std, length, max] per window / utterance; counts utterances; can fail on one."""

    name = "tiny"
    embedding_dim = 4
    normalized = False

    def __init__(self, fail_on: int | None = None) -> None:
        super().__init__({"sample_rate": SR})
        self.utterances = 0
        self.fail_on = fail_on

    def _count(self) -> None:
        self.utterances += 1
        if self.fail_on is not None and self.utterances == self.fail_on:
            raise RuntimeError("simulated crash")

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        return np.stack([windows.mean(1), windows.std(1), np.full(len(windows), windows.shape[1]), windows.max(1)],
                        axis=1).astype(np.float32)

    def embed_windowed(self, wav: np.ndarray, window: int, hop: int, batch_size: int = 256) -> np.ndarray:
        self._count()
        return super().embed_windowed(wav, window, hop, batch_size)

    def embed_utterance(self, wav: np.ndarray) -> np.ndarray | None:
        self._count()
        if len(wav) < 3000:
            return None
        return np.array([wav.mean(), wav.std(), len(wav), wav.max()], np.float32)


@pytest.fixture
def utts(tmp_path: Path) -> list[Utterance]:
    """11 utterances; u03 and u08 are shorter than one 0.5 s window (and than 3000 samples)."""
    d = tmp_path / "audio"
    d.mkdir()
    rng = np.random.default_rng(0)
    out = []
    for i in range(11):
        n = 2400 if i in (3, 8) else 4000 + 700 * i
        x = (0.1 * rng.standard_normal(n) + 0.01 * i).astype(np.float32)
        p = d / f"u{i:02d}.wav"
        sf.write(str(p), x, SR, subtype="FLOAT")
        out.append(Utterance(id=f"u{i:02d}", path=str(p), speaker="s", duration=n / SR, sample_rate=SR))
    return out


def _run(utts, root, enc=None, windowing=WIN, **kw):
    kw.setdefault("trainer_cfg", CPU1)
    kw.setdefault("progress", False)
    return extract_or_reuse(utts, enc or TinyEncoder(), windowing, root, **kw)


def _reference(utts, windowing=WIN) -> tuple[list[str], np.ndarray, int]:
    """(ids, embeddings, windows) utterance by utterance, without Lightning or shards; unreadable
    files are left out (on_error=skip)."""
    enc, ids, rows, windows = TinyEncoder(), [], [], 0
    for i, wav, _ in FrontendDataset(utts, enc.frontend):
        if isinstance(wav, AudioError):
            continue
        emb, n = embed_one(enc, wav, windowing)
        windows += n
        if emb is not None:
            ids.append(utts[i].id)
            rows.append(emb)
    return ids, np.stack(rows), windows


def _work_dir(root: Path) -> Path:
    (work,) = [p for p in Path(root).iterdir() if p.name.endswith(".work")]
    return work


def _same_store(a: EmbeddingStore, b: EmbeddingStore) -> None:
    assert (a.path / "ids.txt").read_bytes() == (b.path / "ids.txt").read_bytes()
    assert (a.path / "embeddings.npy").read_bytes() == (b.path / "embeddings.npy").read_bytes()


# --------------------------------------------------------------------------------------------
# in process


def test_shards_give_what_one_utterance_at_a_time_gives(utts, tmp_path):
    store, summary = _run(utts, tmp_path / "s", shard_size=3, summary_path=tmp_path / "sum.json")
    ids, emb, windows = _reference(utts)
    assert store.ids == ids and store.ids == [u.id for u in utts if u.id not in ("u03", "u08")]
    np.testing.assert_array_equal(np.asarray(store.embeddings), emb)
    assert summary["dropped_short"] == ["u03", "u08"]
    assert summary["windows"] == windows
    assert summary["audio_seconds"] == pytest.approx(sum(u.duration for u in utts))
    assert (summary["ranks"], summary["shards"], summary["shard_size"], summary["shards_reused"]) == (1, 4, 3, 0)
    # the cache key and folder evaluate.py looks for; shards removed after the merge
    key = store_key(TinyEncoder(), WIN)
    assert store.meta["key"] == key and store.path.name == f"tiny-{stable_hash(key)}"
    assert (summary["n_reused"], summary["n_embedded"]) == (0, len(utts))
    # the store and the lock file beside it (kept: deleting a lock file races with a waiting run)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted([store.path.name, f".{store.path.name}.lock"])
    assert (tmp_path / "sum.json").is_file()
    # a matching store is reused, nothing embedded
    enc = TinyEncoder()
    again, summary2 = _run(utts, tmp_path / "s", enc=enc, shard_size=3)
    assert enc.utterances == 0 and summary2["reused_store"] == str(store.path)
    assert (summary2["n_reused"], summary2["n_embedded"], summary2["dropped_short"]) == (len(utts), 0, ["u03", "u08"])


def test_crash_mid_way_then_restart_gives_the_same_store(utts, tmp_path):
    clean, _ = _run(utts, tmp_path / "clean", shard_size=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(utts, tmp_path / "s", enc=TinyEncoder(fail_on=6), shard_size=2)
    shards = sorted(p.name for p in (_work_dir(tmp_path / "s") / "shards").iterdir())
    assert shards == [shard_name(0, 0), shard_name(0, 1)]  # utterances 0..3 done, the 5th..6th lost
    (_work_dir(tmp_path / "s") / "shards" / ".rank0-00002.npz.123.tmp").write_bytes(b"half a shard")
    enc = TinyEncoder()
    store, summary = _run(utts, tmp_path / "s", enc=enc, shard_size=2)
    assert enc.utterances == len(utts) - 4 and summary["shards_reused"] == 2
    _same_store(store, clean)
    assert summary["dropped_short"] == ["u03", "u08"]


def test_restart_keeps_the_first_plan_and_redoes_bad_shards(utts, tmp_path):
    clean, _ = _run(utts, tmp_path / "clean", shard_size=2)
    with pytest.raises(RuntimeError):
        _run(utts, tmp_path / "s", enc=TinyEncoder(fail_on=9), shard_size=2)
    shard_dir = _work_dir(tmp_path / "s") / "shards"
    assert len(list(shard_dir.glob("*.npz"))) == 4
    (shard_dir / shard_name(0, 1)).write_bytes((shard_dir / shard_name(0, 1)).read_bytes()[:100])  # truncated
    shutil.copy(shard_dir / shard_name(0, 2), shard_dir / shard_name(1, 2))  # the same shard twice
    enc = TinyEncoder()
    store, summary = _run(utts, tmp_path / "s", enc=enc, shard_size=5)  # a new shard_size: the plan stays
    assert summary["shard_size"] == 2 and summary["shards_reused"] == 3
    assert enc.utterances == len(utts) - 6
    _same_store(store, clean)


def test_bad_file_stops_keeps_shards_and_skip_restart_reuses_them(utts, tmp_path):
    sf.write(utts[5].path, np.full(7500, np.nan, np.float32), SR, subtype="FLOAT")  # header as in the manifest
    with pytest.raises(AudioError) as ei:
        _run(utts, tmp_path / "s", shard_size=2)
    assert ei.value.path == utts[5].path
    shard_dir = _work_dir(tmp_path / "s") / "shards"
    assert sorted(p.name for p in shard_dir.iterdir()) == [shard_name(0, 0), shard_name(0, 1)]
    enc = TinyEncoder()
    store, summary = _run(utts, tmp_path / "s", enc=enc, shard_size=2, on_error="skip", keep_shards=True)
    assert summary["shards_reused"] == 2 and enc.utterances == len(utts) - 4 - 1
    assert summary["skipped_errors"] == [{"id": "u05", "path": utts[5].path, "reason": "audio holds NaN or inf samples"}]
    assert summary["dropped_short"] == ["u03", "u08"] and summary["embedded"] == len(utts) - 3
    assert "u05" not in store.ids
    ids, emb, _ = _reference(utts)
    assert store.ids == ids
    np.testing.assert_array_equal(np.asarray(store.embeddings), emb)
    # on_error=raise again: the kept shard that dropped the file makes it stop at once, naming it
    enc = TinyEncoder()
    with pytest.raises(AudioError, match="u05.wav"):
        _run(utts, tmp_path / "s", enc=enc, shard_size=2)
    assert enc.utterances == 0


def test_merge_check_names_missing_ids(utts, tmp_path):
    _run(utts, tmp_path / "s", windowing=UTT, shard_size=3, keep_shards=True)
    key = store_key(TinyEncoder(), UTT)
    work = _work_dir(tmp_path / "s")
    plan = ShardPlan(len(utts), 3)
    ids = np.array([u.id for u in utts])
    wkey = json.loads((work / "plan.json").read_text())["work_key"]
    assert {k: v for k, v in wkey.items() if k not in ("todo", "n_todo")} == work_key(key)
    assert wkey["n_todo"] == len(utts) and work.name == f".tiny-{stable_hash(wkey)}.work"
    infos = scan_shards(work / "shards", plan, stable_hash(wkey), ids)
    assert sorted(infos) == [0, 1, 2, 3]
    del infos[1]
    with pytest.raises(ExtractionIncomplete, match=r"3 of 11 .*\['u03', 'u04', 'u05'\]"):
        merge_shards(infos, plan, ids, tmp_path / "merged", 4, key)
    assert not (tmp_path / "merged").exists()


def test_writer_counts_a_duplicated_utterance_once(utts, tmp_path):
    plan = ShardPlan(len(utts), 4)
    ids = [u.id for u in utts]
    out = tmp_path / "shards"
    out.mkdir()
    dm = SimpleNamespace(plan=plan, my_shards=[0, 2], positions=[0, 1, 2, 3, 8, 9, 10], shard_dir=out, key_hash="h",
                         manifest_ids=ids)
    trainer = SimpleNamespace(datamodule=dm, global_rank=0, is_global_zero=True, world_size=1,
                              strategy=SimpleNamespace(barrier=lambda *a: None))
    w = ShardWriter(4, progress=False)
    w.on_predict_start(trainer, None)
    rec = lambda p: {"pos": p, "emb": np.full(4, p, np.float32), "reason": None, "windows": 1, "seconds": 0.5}  # noqa: E731
    # a padding sampler repeats 0 and 9, and 4 belongs to another rank's shard
    for p in (0, 1, 0, 2, 3, 4, 8, 9, 9, 10):
        w.write_on_batch_end(trainer, None, rec(p), None, None, 0, 0)
    w.on_predict_end(trainer, None)
    with np.load(out / shard_name(0, 0)) as z:
        assert z["positions"].tolist() == [0, 1, 2, 3] and int(z["windows"]) == 4
    with np.load(out / shard_name(0, 2)) as z:
        assert z["positions"].tolist() == [8, 9, 10] and z["ids"].tolist() == ["u08", "u09", "u10"]
    assert sorted(p.name for p in out.iterdir()) == [shard_name(0, 0), shard_name(0, 2)]


def test_shard_size_cap():
    assert choose_shard_size(20, 1000, 1) == 5
    assert choose_shard_size(20, 2, 2) == 2
    assert choose_shard_size(1_000_000, 1000, 8) == 1000
    assert choose_shard_size(3, 1000, 4) == 1
    with pytest.raises(ValueError):
        choose_shard_size(10, 0, 1)


def test_store_streaming_write_float16_and_vectorised_lookup(tmp_path):
    ids = [f"id{i}" for i in range(10)]
    emb = np.arange(40, dtype=np.float32).reshape(10, 4) / 3
    chunks = [emb[:3], emb[3:3], emb[3:]]
    store = EmbeddingStore.write_chunks(tmp_path / "s", ids, iter(chunks), 4, {"k": 1}, dtype="float16")
    assert store.embeddings.dtype == np.float16 and store.meta["n"] == 10
    np.testing.assert_array_equal(store.select(["id7", "id2", "id7"]), emb[[7, 2, 7]].astype(np.float16))
    assert store.index() is store.index()  # built once
    with pytest.raises(KeyError, match="2 id"):
        store.rows(["id1", "nope", "nix"])
    with pytest.raises(ValueError, match="10 ids for 9"):
        EmbeddingStore.write_chunks(tmp_path / "t", ids, [emb[:9]], 4, {})
    assert not (tmp_path / "t").exists()


# --------------------------------------------------------------------------------------------
# end to end: extract.py in subprocesses

pytest_e2e = pytest.mark.e2e
DDP = ("trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from e2e_utils import speech_emodb_tree

    return speech_emodb_tree(tmp_path_factory.mktemp("corpus") / "emodb", speakers=("03", "08"), texts=("a01", "a02"))


def _store_dir(tmp: Path, encoder: str) -> Path:
    (d,) = [p for p in (tmp / "cache" / "embeddings" / "emodb").iterdir() if p.name.startswith(f"{encoder}-")]
    return d


class Runs:
    """extract.py runs shared by the tests of this module (each in its own cache)."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory, self.done = factory, {}

    def get(self, name: str, corpus: Path, *overrides: str, threads: str | None = None) -> Path:
        if name not in self.done:
            from e2e_utils import run_script

            tmp = self.factory.mktemp(name)
            with pytest.MonkeyPatch.context() as mp:
                if threads:
                    mp.setenv("OMP_NUM_THREADS", threads)
                run_script("extract.py", f"data.root={corpus}", f"hydra.run.dir={tmp / 'run'}", *overrides, tmp=tmp)
            self.done[name] = tmp
        return self.done[name]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return Runs(tmp_path_factory)


@pytest.mark.slow  # covered in the default run by DDP with 2 CPU processes: tests/test_e2e_train.py::test_ddp_two_cpu_processes
@pytest_e2e
def test_one_vs_two_ddp_processes_egemaps_bit_identical(corpus, runs):
    one = runs.get("eg1", corpus, "encoder=egemaps", "extract.shard_size=3")
    two = runs.get("eg2", corpus, "encoder=egemaps", "extract.shard_size=3", *DDP)
    from e2e_utils import read_json

    s1, s2 = read_json(one / "run" / "extract_summary.json"), read_json(two / "run" / "extract_summary.json")
    assert (s1["ranks"], s2["ranks"]) == (1, 2) and s1["embedded"] == s2["embedded"] == 20
    assert s2["shards"] == 7 and not s2["dropped_short"]
    a, b = EmbeddingStore.open(_store_dir(one, "egemaps")), EmbeddingStore.open(_store_dir(two, "egemaps"))
    _same_store(a, b)
    emb = np.asarray(a.embeddings)
    assert np.ptp(emb, axis=0).max() > 1.0  # features clearly depend on the input
    # no shard left behind, one store per cache
    assert [p.name for p in (two / "cache" / "embeddings" / "emodb").iterdir() if not p.name.endswith(".lock")] == [b.path.name]


@pytest.mark.slow  # the egemaps variant covers DDP bit-identity in the default run
@pytest_e2e
def test_one_vs_two_ddp_processes_deeptalk_bit_identical(corpus, runs):
    """Bit-identical with the same intra-op threads per process (OMP_NUM_THREADS=1; Lightning
    gives each of 2 DDP ranks 1 thread on 2 cores anyway). With a different thread count (the
    single process's default 2 threads) the CPU kernels split their float sums differently:
    not bitwise, max abs difference ~5e-8, checked against 1e-6."""
    one = runs.get("dt1", corpus, "encoder=deeptalk", "extract.shard_size=2", threads="1")
    two = runs.get("dt2", corpus, "encoder=deeptalk", "extract.shard_size=2", *DDP, threads="1")
    a, b = EmbeddingStore.open(_store_dir(one, "deeptalk")), EmbeddingStore.open(_store_dir(two, "deeptalk"))
    assert len(a.ids) == 20
    _same_store(a, b)
    assert np.abs(np.asarray(a.embeddings) - np.asarray(b.embeddings)).max() == 0.0
    # the single process with its default threads: not bitwise, within 1e-6 (measured ~5e-8)
    default = runs.get("dt1_default_threads", corpus, "encoder=deeptalk", "extract.shard_size=2")
    c = EmbeddingStore.open(_store_dir(default, "deeptalk"))
    assert c.ids == b.ids
    assert np.abs(np.asarray(c.embeddings) - np.asarray(b.embeddings)).max() <= 1e-6


@pytest.mark.slow  # test_crash_mid_way_then_restart_gives_the_same_store covers resume in-process
@pytest_e2e
def test_sigkill_mid_way_then_restart_gives_an_identical_store(corpus, runs, tmp_path):
    from e2e_utils import read_json, run_script

    from markers import PROJECT_ROOT

    overrides = ("encoder=deeptalk", "extract.shard_size=2", *DDP, f"data.root={corpus}")
    env = {**os.environ, "DEEPTALK_CACHE_DIR": str(tmp_path / "cache"), "HYDRA_FULL_ERROR": "1",
           "PYTHONWARNINGS": "ignore", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(PROJECT_ROOT / "extract.py"), f"paths.log_dir={tmp_path / 'outputs'}",
           f"hydra.run.dir={tmp_path / 'killed'}", *overrides]
    err = tmp_path / "killed.err"
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err.open("w"),
                            start_new_session=True)
    root = tmp_path / "cache" / "embeddings" / "emodb"
    deadline = time.monotonic() + 180
    try:
        while not list(root.glob(".deeptalk-*.work/shards/rank*.npz")):
            assert proc.poll() is None, f"extract.py ended before writing a shard:\n{err.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no shard after 180 s"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # both DDP ranks, as a dying node would
        proc.wait()
    shards = list(root.glob(".deeptalk-*.work/shards/rank*.npz"))
    assert 1 <= len(shards) < 10
    assert not [p for p in root.iterdir() if not p.name.startswith(".")], "no store after a kill"
    run_script("extract.py", f"hydra.run.dir={tmp_path / 'restart'}", *overrides, tmp=tmp_path)
    summary = read_json(tmp_path / "restart" / "extract_summary.json")
    assert summary["shards_reused"] >= 1 and summary["embedded"] == 20 and summary["ranks"] == 2
    clean = runs.get("dt2", corpus, "encoder=deeptalk", "extract.shard_size=2", *DDP, threads="1")
    _same_store(EmbeddingStore.open(_store_dir(tmp_path, "deeptalk")), EmbeddingStore.open(_store_dir(clean, "deeptalk")))


@pytest_e2e
def test_bad_file_in_the_middle_stops_then_skip_restart_reuses_shards(corpus, tmp_path):
    from e2e_utils import read_json, run_script

    root = tmp_path / "emodb"
    shutil.copytree(corpus, root)
    # header fine (prepare passes), samples not: fails when extraction decodes it (11th of 20)
    sf.write(str(root / "wav" / "08a01Fa.wav"), np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    args = ("encoder=egemaps", f"data.root={root}", "extract.shard_size=2")
    proc = run_script("extract.py", *args, f"hydra.run.dir={tmp_path / 'r1'}", tmp=tmp_path, check=False)
    assert proc.returncode != 0
    assert "08a01Fa.wav" in proc.stderr and "NaN" in proc.stderr
    shards = sorted(p.name for p in (tmp_path / "cache" / "embeddings" / "emodb").glob(".egemaps-*.work/shards/*"))
    assert shards == [shard_name(0, k) for k in range(5)]  # the 10 utterances before it
    run_script("extract.py", *args, "data.on_error=skip", f"hydra.run.dir={tmp_path / 'r2'}", tmp=tmp_path)
    summary = read_json(tmp_path / "r2" / "extract_summary.json")
    assert summary["shards_reused"] == 5 and summary["embedded"] == 19
    assert [(s["id"], s["reason"]) for s in summary["skipped_errors"]] == [("08a01Fa", "audio holds NaN or inf samples")]
