"""Caches that cannot be fooled: a corpus file replaced with its size and mtime kept is noticed
by prepare (checksum) and by the embedding store key; shared caches are group-readable."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deeptalk_ser.data.corpora.base import CorpusLoader
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.data.prepare import load_prepared
from deeptalk_ser.embedding.extraction import extract_or_reuse
from tests.test_extraction import WIN, StatsEncoder

SR = 8000


class FlatLoader(CorpusLoader):
    name = "flat"

    def scan(self) -> list[Utterance]:
        return [Utterance(id=p.stem, path=p.name, speaker="s1", label="neutral") for p in sorted(self.root.glob("*.wav"))]


def _write(path: Path, value: float) -> None:
    sf.write(str(path), np.full(SR, value, dtype=np.float32), SR, subtype="FLOAT")


def _replace_keeping_size_and_mtime(path: Path, value: float) -> None:
    st = path.stat()
    _write(path, value)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)


@pytest.fixture
def corpus(tmp_path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    _write(root / "a.wav", 0.25)
    _write(root / "b.wav", 0.5)
    return root


def test_manifest_carries_content_checksums(corpus, tmp_path):
    utts, _ = load_prepared(FlatLoader(corpus), tmp_path / "m")
    assert all(u.checksum and len(u.checksum) == 16 for u in utts)
    assert utts[0].checksum != utts[1].checksum


def test_replaced_file_with_same_size_and_mtime_is_reextracted(corpus, tmp_path):
    cache = tmp_path / "stores"
    utts, _ = load_prepared(FlatLoader(corpus), tmp_path / "m")
    store, _ = extract_or_reuse(utts, StatsEncoder(), WIN, cache, progress=False)
    np.testing.assert_allclose(store.select(["a"])[0][0], 0.25, atol=1e-6)

    _replace_keeping_size_and_mtime(corpus / "a.wav", -0.75)
    utts2, report = load_prepared(FlatLoader(corpus), tmp_path / "m")
    assert not report.reused and report.headers_read == 1  # only the replaced file is re-read
    assert utts2[0].checksum != utts[0].checksum and utts2[1].checksum == utts[1].checksum
    enc = StatsEncoder()
    store2, summary = extract_or_reuse(utts2, enc, WIN, cache, progress=False)
    # the same store (one per corpus and encoder): the stale row of "a" is embedded again, "b" is reused
    assert enc.calls == 1 and (summary["n_embedded"], summary["n_reused"]) == (1, 1) and store2.path == store.path
    np.testing.assert_allclose(store2.select(["a"])[0][0], -0.75, atol=1e-6)
    np.testing.assert_allclose(store2.select(["b"])[0][0], 0.5, atol=1e-6)
    assert store2.ids == ["b", "a"]  # rows kept, then the new ones


def test_unchanged_corpus_reuses_manifest_and_store(corpus, tmp_path):
    cache = tmp_path / "stores"
    utts, _ = load_prepared(FlatLoader(corpus), tmp_path / "m")
    extract_or_reuse(utts, StatsEncoder(), WIN, cache, progress=False)
    utts2, report = load_prepared(FlatLoader(corpus), tmp_path / "m")
    enc = StatsEncoder()
    _, summary = extract_or_reuse(utts2, enc, WIN, cache, progress=False)
    assert report.reused and enc.calls == 0 and "reused_store" in summary


def test_store_folders_follow_the_umask(corpus, tmp_path):
    """mkdtemp makes 0700 folders: renamed into place they would lock a lab group out of a shared cache."""
    old = os.umask(0o002)
    try:
        utts, _ = load_prepared(FlatLoader(corpus), tmp_path / "m")
        store, _ = extract_or_reuse(utts, StatsEncoder(), WIN, tmp_path / "stores", progress=False)
    finally:
        os.umask(old)
    mode = stat.S_IMODE(store.path.stat().st_mode)
    assert mode == 0o775, oct(mode)
    for f in store.path.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) & 0o044 == 0o044, (f, oct(f.stat().st_mode))


_EXTRACT_SCRIPT = """
import json, sys, time
import numpy as np
from deeptalk_ser.data.manifest import read_manifest
from deeptalk_ser.embedding.extraction import extract_or_reuse
from tests.test_extraction import WIN, StatsEncoder

class SlowStats(StatsEncoder):
    def embed_windows(self, windows):
        time.sleep(0.3)  # keep the first run busy while the second one starts
        return super().embed_windows(windows)

store, summary = extract_or_reuse(read_manifest(sys.argv[1]), SlowStats(), WIN, sys.argv[2], progress=False,
                                  shard_size=1)
print(json.dumps({"path": str(store.path), "reused": "reused_store" in summary,
                  "rows": np.asarray(store.embeddings).tolist()}))
"""


def test_two_extraction_processes_on_one_store(tmp_path):
    """The second run waits for the first one's lock and reuses its store: both succeed, one store
    (before: the first to finish deleted the shared shard folder under the other)."""
    import json
    import subprocess
    import sys

    root = tmp_path / "corpus"
    root.mkdir()
    for i in range(6):
        _write(root / f"u{i}.wav", 0.1 * (i + 1))
    _, report = load_prepared(FlatLoader(root), tmp_path / "m")
    script = tmp_path / "extract_job.py"
    script.write_text(_EXTRACT_SCRIPT)
    cache = tmp_path / "stores"
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    procs = [subprocess.Popen([sys.executable, str(script), str(report.manifest), str(cache)], cwd=repo, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert results[0]["path"] == results[1]["path"]
    assert results[0]["rows"] == results[1]["rows"] and len(results[0]["rows"]) == 6
    assert sorted(r["reused"] for r in results) == [False, True]
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [Path(results[0]["path"]).name]
