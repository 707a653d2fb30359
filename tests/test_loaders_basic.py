"""Corpus loaders on generated fixtures: EmoDB, a generic Kaldi data dir, precomputed arrays."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from deeptalk_ser.data.corpora.emodb import EmoDBCorpus
from deeptalk_ser.data.corpora.kaldi import KaldiCorpus, read_kaldi_map
from deeptalk_ser.data.corpora.precomputed import EmbeddingArrayCorpus
from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.data.prepare import load_prepared

# ------------------------------------------------------------------------ EmoDB


@pytest.fixture
def emodb_22k(tmp_path, write_wav) -> Path:
    root = tmp_path / "emodb22"
    for i, name in enumerate(["03a01Wa", "03a02Fb", "08b01Tc", "10a05Nb", "16b10Ld"]):
        write_wav(root / "wav" / f"{name}.wav", 0.3 + 0.1 * i, 22050, freq=200.0 + 50 * i)
    (root / "wav" / "README.txt").write_text("not audio")  # non-wav files are ignored
    return root


def test_emodb_labels_speakers_genders_at_22050(emodb_22k, tmp_path):
    utts = EmoDBCorpus(emodb_22k).scan()
    got = {u.id: (u.label, u.speaker, u.extra["gender"], u.extra["label_raw"], u.extra["text"], u.extra["version"])
           for u in utts}
    assert got == {
        "03a01Wa": ("angry", "03", "m", "W", "a01", "a"),
        "03a02Fb": ("happy", "03", "m", "F", "a02", "b"),
        "08b01Tc": ("sad", "08", "f", "T", "b01", "c"),
        "10a05Nb": ("neutral", "10", "m", "N", "a05", "b"),
        "16b10Ld": ("boredom", "16", "f", "L", "b10", "d"),
    }
    assert all(u.path == f"wav/{u.id}.wav" and u.corpus == "emodb" for u in utts)
    prepared, _ = load_prepared(EmoDBCorpus(emodb_22k), tmp_path / "out")
    assert {u.sample_rate for u in prepared} == {22050}
    assert {u.id: round(u.duration, 3) for u in prepared}["16b10Ld"] == 0.7


def test_emodb_tree_fixture_counts(emodb_tree):
    utts = EmoDBCorpus(root=emodb_tree).scan()
    assert len(utts) == 30
    assert Counter(u.speaker for u in utts) == {"03": 10, "08": 10, "09": 10}
    assert Counter(u.label for u in utts) == {"angry": 6, "sad": 6, "happy": 6, "neutral": 6, "boredom": 6}
    assert {u.speaker: u.extra["gender"] for u in utts} == {"03": "m", "08": "f", "09": "f"}


def test_emodb_bad_file_name(emodb_22k, write_wav):
    bad = write_wav(emodb_22k / "wav" / "recording1.wav", 0.1, 22050)
    with pytest.raises(DataError) as ei:
        EmoDBCorpus(emodb_22k).scan()
    assert ei.value.path == str(bad)


def test_emodb_unknown_emotion_letter(emodb_22k, write_wav):
    bad = write_wav(emodb_22k / "wav" / "03a01Xa.wav", 0.1, 22050)
    with pytest.raises(DataError, match="'X'") as ei:
        EmoDBCorpus(emodb_22k).scan()
    assert ei.value.path == str(bad)


def test_emodb_missing_root_names_path(tmp_path):
    missing = tmp_path / "no_such_emodb"
    with pytest.raises(DataError) as ei:
        EmoDBCorpus(missing)
    assert str(missing) in str(ei.value)


def test_emodb_missing_wav_folder(tmp_path):
    (tmp_path / "emodb").mkdir()
    with pytest.raises(DataError) as ei:
        EmoDBCorpus(tmp_path / "emodb").scan()
    assert ei.value.path == str(tmp_path / "emodb" / "wav")


# ------------------------------------------------------------------------ Kaldi


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def kaldi_root(tmp_path, write_wav) -> Path:
    root = tmp_path / "so762"
    write_wav(root / "WAVE" / "SPK1" / "u1.wav", 0.5, 16000)
    write_wav(root / "WAVE" / "SPK1" / "u2.wav", 0.25, 16000)
    write_wav(root / "WAVE" / "SPK2" / "u3.wav", 0.75, 16000)
    _write(root / "train" / "wav.scp", "u2 WAVE/SPK1/u2.wav\nu1 WAVE/SPK1/u1.wav\n")
    _write(root / "train" / "utt2spk", "u1 SPK1\nu2 SPK1\n")
    _write(root / "train" / "spk2gender", "SPK1 f\n")
    _write(root / "train" / "text", "u1 HELLO WORLD\nu2 GOOD MORNING\n")
    _write(root / "test" / "wav.scp", "u3 WAVE/SPK2/u3.wav\n")
    _write(root / "test" / "utt2spk", "u3 SPK2\n")  # no spk2gender, no text in test
    return root


def test_kaldi_scan(kaldi_root):
    utts = KaldiCorpus(kaldi_root).scan()
    assert [(u.id, u.path, u.speaker, u.split) for u in utts] == [
        ("u1", "WAVE/SPK1/u1.wav", "SPK1", "train"),
        ("u2", "WAVE/SPK1/u2.wav", "SPK1", "train"),
        ("u3", "WAVE/SPK2/u3.wav", "SPK2", "test"),
    ]
    assert utts[0].extra == {"gender": "f", "text": "HELLO WORLD"}
    assert utts[2].extra == {}
    assert all(u.label is None for u in utts)


def test_kaldi_relative_paths_resolved_by_prepare(kaldi_root, tmp_path):
    utts, _ = load_prepared(KaldiCorpus(kaldi_root, subsets=["train", "test"]), tmp_path / "out")
    by = {u.id: u for u in utts}
    assert Path(by["u3"].path) == (kaldi_root / "WAVE" / "SPK2" / "u3.wav").resolve()
    assert by["u2"].duration == pytest.approx(0.25)


def test_kaldi_missing_speaker(kaldi_root):
    _write(kaldi_root / "train" / "utt2spk", "u1 SPK1\n")
    with pytest.raises(DataError, match="u2") as ei:
        KaldiCorpus(kaldi_root).scan()
    assert ei.value.path == str(kaldi_root / "train" / "utt2spk")


def test_kaldi_duplicate_key_with_line_number(kaldi_root):
    _write(kaldi_root / "train" / "utt2spk", "u1 SPK1\n\nu2 SPK1\nu1 SPK9\n")
    with pytest.raises(DataError, match="duplicate key 'u1'") as ei:
        KaldiCorpus(kaldi_root).scan()
    assert ei.value.line == 4 and ei.value.path == str(kaldi_root / "train" / "utt2spk")
    assert str(ei.value).startswith(f"{kaldi_root / 'train' / 'utt2spk'}:4:")


def test_kaldi_piped_command_refused(kaldi_root):
    _write(kaldi_root / "train" / "wav.scp", "u1 WAVE/SPK1/u1.wav\nu2 sox WAVE/SPK1/u2.wav -t wav - |\n")
    with pytest.raises(DataError, match="piped") as ei:
        KaldiCorpus(kaldi_root).scan()
    assert ei.value.path == str(kaldi_root / "train" / "wav.scp")


def test_kaldi_segments_refused(kaldi_root):
    _write(kaldi_root / "test" / "segments", "s1 u3 0.0 0.5\n")
    with pytest.raises(DataError, match="segments"):
        KaldiCorpus(kaldi_root).scan()


def test_kaldi_malformed_line(tmp_path):
    p = tmp_path / "utt2spk"
    _write(p, "u1 SPK1\nlonely\n")
    with pytest.raises(DataError) as ei:
        read_kaldi_map(p)
    assert ei.value.line == 2


def test_kaldi_missing_required_file(kaldi_root):
    (kaldi_root / "test" / "utt2spk").unlink()
    with pytest.raises(DataError) as ei:
        KaldiCorpus(kaldi_root).scan()
    assert ei.value.path == str(kaldi_root / "test" / "utt2spk")


# ------------------------------------------------------------------ precomputed


@pytest.fixture
def arrays(tmp_path) -> Path:
    root = tmp_path / "emb"
    root.mkdir()
    np.save(root / "all_train_x.npy", np.arange(12, dtype=np.float64).reshape(4, 3))
    np.save(root / "all_train_y.npy", np.array([1, 2, 3, 5]))
    np.save(root / "all_test_x.npy", -np.ones((2, 3), dtype=np.float32))
    np.save(root / "all_test_y.npy", np.array([5.0, 1.0]))  # float codes as some exports store them
    return root


def test_precomputed_labels_and_ids(arrays, tmp_path):
    loader = EmbeddingArrayCorpus(arrays)
    utts = loader.scan()
    assert [(u.id, u.label, u.split, u.extra["label_raw"]) for u in utts] == [
        ("all_train:0", "happy", "train", 1), ("all_train:1", "sad", "train", 2),
        ("all_train:2", "neutral", "train", 3), ("all_train:3", "angry", "train", 5),
        ("all_test:0", "angry", "test", 5), ("all_test:1", "happy", "test", 1),
    ]
    ids, X = loader.load_embeddings()
    assert ids == [u.id for u in utts]
    assert X.dtype == np.float32 and X.shape == (6, 3)
    np.testing.assert_array_equal(X[3], [9, 10, 11])
    np.testing.assert_array_equal(X[5], [-1, -1, -1])
    prepared, report = load_prepared(loader, tmp_path / "out")
    assert report.n_utterances == 6 and report.headers_read == 0
    assert prepared[0].duration is None


def test_precomputed_unknown_code(arrays):
    np.save(arrays / "all_test_y.npy", np.array([5, 4]))
    with pytest.raises(DataError, match="unknown label code 4") as ei:
        EmbeddingArrayCorpus(arrays).scan()
    assert ei.value.path == str(arrays / "all_test_y.npy")
    assert "row 1" in str(ei.value)


def test_precomputed_shape_mismatch(arrays):
    np.save(arrays / "all_train_y.npy", np.array([1, 2, 3]))
    with pytest.raises(DataError) as ei:
        EmbeddingArrayCorpus(arrays).scan()
    assert ei.value.path == str(arrays / "all_train_y.npy")
    assert "4" in ei.value.problem


def test_precomputed_x_not_2d(arrays):
    np.save(arrays / "all_train_x.npy", np.zeros(4))
    with pytest.raises(DataError) as ei:
        EmbeddingArrayCorpus(arrays).scan()
    assert ei.value.path == str(arrays / "all_train_x.npy")


def test_precomputed_missing_array_names_it(arrays):
    (arrays / "all_test_x.npy").unlink()
    with pytest.raises(DataError) as ei:
        EmbeddingArrayCorpus(arrays).scan()
    assert ei.value.path == str(arrays / "all_test_x.npy")


def test_precomputed_custom_codes_and_splits(arrays):
    loader = EmbeddingArrayCorpus(arrays, splits={"dev": "all_test"}, label_codes={"5": "x", "1": "y"})
    assert [(u.label, u.split) for u in loader.scan()] == [("x", "dev"), ("y", "dev")]
