"""Extraction with a tiny deterministic encoder: window averages, short drops, bad files, reuse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deeptalk_ser.embedding.encoders.base import SpeakerEncoder
from deeptalk_ser.utils.errors import AudioError
from deeptalk_ser.embedding.extraction import embed_one, extract_or_reuse
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.embedding.windowing import Windowing

SR = 8000
#: 0.5 s windows with a 0.25 s hop: 4000 / 2000 samples at 8 kHz.
WIN = Windowing(window_s=0.5, hop_s=0.25)


class StatsEncoder(SpeakerEncoder):
    """embedding = [mean, std, length] of each window; counts its calls. Not registered."""

    name = "stats"
    embedding_dim = 3
    normalized = False

    def __init__(self, frontend=None, device: str = "cpu") -> None:
        super().__init__(frontend or {"sample_rate": SR}, device)
        self.calls = 0

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.stack([windows.mean(axis=1), windows.std(axis=1),
                         np.full(len(windows), windows.shape[1])], axis=1).astype(np.float32)

    def embed_utterance(self, wav: np.ndarray) -> np.ndarray | None:
        self.calls += 1
        if len(wav) < 1000:
            return None
        return np.array([wav.mean(), wav.std(), len(wav)], dtype=np.float32)


def extract_embeddings(utts, encoder, windowing, *, root, **kw) -> tuple[list[str], np.ndarray, dict]:
    """(ids, embeddings, summary) of a fresh one-process extraction into ``root``."""
    store, summary = extract_or_reuse(utts, encoder, windowing, root, progress=False, **kw)
    return list(store.ids), np.asarray(store.embeddings), summary


def _write_float(path: Path, samples: np.ndarray) -> Path:
    sf.write(str(path), samples.astype(np.float32), SR, subtype="FLOAT")
    return path


@pytest.fixture
def corpus(tmp_path) -> list[Utterance]:
    """const: 1 s of 0.25 (3 windows, each mean .25 std 0);
    step: 0.5 s of +0.5 then 0.25 s of -0.5 (2 windows: [0.5, 0] and [0, 0.5]);
    short: 0.3 s (2400 samples < one window)."""
    d = tmp_path / "audio"
    d.mkdir()
    files = {
        "const": np.full(8000, 0.25),
        "step": np.concatenate([np.full(4000, 0.5), np.full(2000, -0.5)]),
        "short": np.full(2400, 0.1),
    }
    utts = []
    for uid, x in files.items():
        p = _write_float(d / f"{uid}.wav", x)
        utts.append(Utterance(id=uid, path=str(p), speaker="s1", label="neutral",
                              duration=len(x) / SR, sample_rate=SR))
    return utts


def test_window_means_short_drop_and_summary(corpus, tmp_path):
    utts = corpus
    enc = StatsEncoder()
    ids, emb, summary = extract_embeddings(utts, enc, WIN, root=tmp_path / 'store')
    assert ids == ["const", "step"]
    assert emb.dtype == np.float32 and emb.shape == (2, 3)
    np.testing.assert_allclose(emb[0], [0.25, 0.0, 4000], atol=1e-6)
    # step windows: [+.5 x4000] -> (0.5, 0); [+.5 x2000, -.5 x2000] -> (0, 0.5)
    np.testing.assert_allclose(emb[1], [0.25, 0.25, 4000], atol=1e-6)
    assert summary["dropped_short"] == ["short"]
    assert summary["utterances_in"] == 3 and summary["embedded"] == 2
    assert summary["windows"] == 5
    assert summary["audio_seconds"] == pytest.approx(1.0 + 0.75 + 0.3)
    assert summary["n_dropped_short"] == 1 and summary["n_skipped_errors"] == 0


def test_renormalize_gives_unit_norm(corpus, tmp_path):
    utts = corpus
    _, emb, _ = extract_embeddings(utts, StatsEncoder(), Windowing(0.5, 0.25, renormalize=True), root=tmp_path / 'store')
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(emb[0], np.array([0.25, 0, 4000]) / np.hypot(0.25, 4000), rtol=1e-5)


def test_utterance_level_mode(corpus, tmp_path):
    utts = corpus
    ids, emb, summary = extract_embeddings(utts, StatsEncoder(), Windowing(window_s=None), root=tmp_path / 'store')
    assert ids == ["const", "step", "short"]
    np.testing.assert_allclose(emb[2], [0.1, 0.0, 2400], atol=1e-6)
    np.testing.assert_allclose(emb[1], [1 / 6, np.sqrt(2) / 3, 6000], rtol=1e-5)  # 2/3 at .5, 1/3 at -.5
    assert summary["windows"] == 3


def test_embed_one_too_short():
    emb, n = embed_one(StatsEncoder(), np.zeros(3999, np.float32), WIN)
    assert emb is None and n == 0


def test_unreadable_file_raises_naming_it(corpus, tmp_path):
    utts = corpus
    Path(utts[1].path).write_bytes(b"garbage" * 50)
    with pytest.raises(AudioError) as ei:
        extract_embeddings(utts, StatsEncoder(), WIN, root=tmp_path / 'store')
    assert ei.value.path == utts[1].path


def test_unreadable_file_skipped_and_listed(corpus, tmp_path):
    utts = corpus
    Path(utts[1].path).write_bytes(b"garbage" * 50)
    ids, emb, summary = extract_embeddings(utts, StatsEncoder(), WIN, on_error="skip", root=tmp_path / 'store')
    assert ids == ["const"] and emb.shape == (1, 3)
    assert [s["id"] for s in summary["skipped_errors"]] == ["step"]
    assert summary["skipped_errors"][0]["path"] == utts[1].path
    assert summary["dropped_short"] == ["short"]


def test_file_truncated_after_prepare_is_an_error(corpus, tmp_path):
    utts = corpus
    _write_float(Path(utts[0].path), np.full(5000, 0.25))  # manifest says 8000 frames
    with pytest.raises(AudioError, match="truncated"):
        extract_embeddings(utts, StatsEncoder(), WIN, root=tmp_path / 'store')


def test_worker_processes_give_the_same_result_and_carry_errors(corpus, tmp_path):
    """With DataLoader workers the AudioError travels back to the main process by pickling."""
    utts = corpus
    Path(utts[1].path).write_bytes(b"garbage" * 50)
    ids, emb, summary = extract_embeddings(utts, StatsEncoder(), WIN, on_error="skip", num_workers=1, root=tmp_path / 'store')
    assert ids == ["const"]
    np.testing.assert_allclose(emb[0], [0.25, 0.0, 4000], atol=1e-6)
    assert summary["skipped_errors"][0]["path"] == utts[1].path


def test_extract_or_reuse(corpus, tmp_path):
    utts = corpus
    root = tmp_path / "stores"
    enc = StatsEncoder()
    store, summary = extract_or_reuse(utts, enc, WIN, root, summary_path=tmp_path / "sum.json")
    first_calls = enc.calls
    assert first_calls > 0 and "reused_store" not in summary
    assert store.ids == ["const", "step"] and store.path.parent == root
    assert (tmp_path / "sum.json").is_file()

    enc2 = StatsEncoder()
    again, summary2 = extract_or_reuse(utts, enc2, WIN, root)
    assert enc2.calls == 0
    assert again.path == store.path and summary2["reused_store"] == str(store.path)
    assert summary2["dropped_short"] == ["short"]
    np.testing.assert_array_equal(again.select(["step", "const"]), store.select(["step", "const"]))

    enc3 = StatsEncoder()
    other, _ = extract_or_reuse(utts, enc3, Windowing(window_s=0.5, hop_s=0.125), root)
    assert enc3.calls > 0 and other.path != store.path
    assert len([p for p in root.iterdir() if not p.name.endswith(".lock")]) == 2


def test_one_store_serves_every_subset_and_changed_audio_is_embedded_again(corpus, tmp_path):
    utts = corpus
    root = tmp_path / "stores"
    first, _ = extract_or_reuse(utts, StatsEncoder(), WIN, root)
    enc = StatsEncoder()
    second, summary = extract_or_reuse(utts[:2], enc, WIN, root)  # a subset (e.g. one task's utterances)
    assert enc.calls == 0 and second.path == first.path
    assert (summary["n_reused"], summary["n_embedded"], summary["reused_store"]) == (2, 0, str(first.path))
    assert summary["utterances_in"] == 2 and summary["embedded"] == 2 and summary["dropped_short"] == []
    changed = [Utterance(**{**vars(utts[0]), "duration": 0.5})] + utts[1:]  # header facts changed
    enc = StatsEncoder()
    third, summary = extract_or_reuse(changed, enc, WIN, root)
    assert enc.calls == 1 and third.path == first.path  # only the changed utterance (one window batch)
    assert (summary["n_reused"], summary["n_embedded"]) == (2, 1)
    assert summary["dropped_short"] == ["short"]  # the short one's drop is reused, not redone
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == [first.path.name]


def test_a_store_made_for_a_subset_grows_by_the_missing_ids_only(corpus, tmp_path):
    """extract.py after an evaluation job (or a corpus that grew): only the ids the store lacks
    are embedded, the rows it had are kept bit for bit, and the summary says which is which."""
    root = tmp_path / "stores"
    enc = StatsEncoder()
    small, summary = extract_or_reuse(corpus[1:2], enc, WIN, root)  # "step" only
    assert small.ids == ["step"] and summary["n_embedded"] == 1 and "reused_store" not in summary
    before = small.select(["step"]).copy()
    embedded = []

    class Counting(StatsEncoder):
        def embed_windowed(self, wav, window, hop, batch_size=256):
            embedded.append(len(wav))
            return super().embed_windowed(wav, window, hop, batch_size)

    full, summary = extract_or_reuse(corpus, Counting(), WIN, root, summary_path=tmp_path / "sum.json")
    assert sorted(embedded) == [2400, 8000]  # "short" and "const", never "step" again
    assert full.path == small.path and full.ids == ["step", "const"]
    np.testing.assert_array_equal(full.select(["step"]), before)
    assert (summary["n_reused"], summary["n_embedded"], summary["embedded"]) == (1, 2, 2)
    assert summary["dropped_short"] == ["short"] and summary["reused_store"] == str(full.path)
    import json

    assert json.loads((tmp_path / "sum.json").read_text())["n_embedded"] == 2
    again, summary = extract_or_reuse(list(reversed(corpus)), StatsEncoder(), WIN, root)
    assert (summary["n_reused"], summary["n_embedded"]) == (3, 0) and again.path == full.path


def test_extract_or_reuse_reextracts_when_frontend_changes(corpus, tmp_path):
    utts = corpus
    root = tmp_path / "stores"
    first, _ = extract_or_reuse(utts, StatsEncoder(), WIN, root)
    enc = StatsEncoder(frontend={"sample_rate": SR, "normalize_dbfs": -20})
    second, _ = extract_or_reuse(utts, enc, WIN, root)
    assert enc.calls > 0 and second.path != first.path
