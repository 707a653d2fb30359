"""MSP-Podcast loader on fixture trees in both release layouts (Audios/ + labels_consensus.csv,
and 1.8's AudioFiles/Audios_wav/ + the misspelt labels_concensus.csv)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deeptalk_ser.data.corpora.msp_podcast import MspPodcastCorpus
from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.data.manifest import read_manifest
from deeptalk_ser.data.prepare import prepare_manifest

LABELS = """FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set
MSP-PODCAST_0001_0008.wav,N,2.2,4.0,2.6,30,Male,Test1
MSP-PODCAST_0001_0019.wav,A,5.8,2.0,5.4,30,Male,Test1
MSP-PODCAST_0002_0033.wav,H,4.6,5.8,4.4,Unknown,Unknown,Train
MSP-PODCAST_0002_0051.wav,X,3.0,3.6,3.2,Unknown,Female,Train
MSP-PODCAST_0003_0004.wav,O,3.4,3.0,3.8,127,Female,Development
MSP-PODCAST_0004_0120.wav,S,2.0,2.4,2.8,455,Female,Test2
"""
EXPECTED = {  # id -> (speaker, label, split, speaker_known, gender)
    "MSP-PODCAST_0001_0008": ("30", "neutral", "test1", True, "m"),
    "MSP-PODCAST_0001_0019": ("30", "angry", "test1", True, "m"),
    "MSP-PODCAST_0002_0033": ("unknown:MSP-PODCAST_0002_0033", "happy", "train", False, None),
    "MSP-PODCAST_0002_0051": ("unknown:MSP-PODCAST_0002_0051", None, "train", False, "f"),
    "MSP-PODCAST_0003_0004": ("127", "other", "dev", True, "f"),
    "MSP-PODCAST_0004_0120": ("455", "sad", "test2", True, "f"),
}


def _build(root: Path, audio_dir: str, labels_name: str, write_wav, write_file, labels: str = LABELS) -> Path:
    for i, stem in enumerate(EXPECTED):
        write_wav(root / audio_dir / f"{stem}.wav", seconds=0.1 + 0.05 * i)
    write_file(root / "Labels" / labels_name, labels)
    return root


@pytest.fixture
def msp_root(tmp_path: Path, write_wav, write_file) -> Path:
    return _build(tmp_path / "MSP-Podcast", "Audios", "labels_consensus.csv", write_wav, write_file)


@pytest.fixture
def msp18_root(tmp_path: Path, write_wav, write_file) -> Path:
    return _build(tmp_path / "MSP-Podcast-1.8", "AudioFiles/Audios_wav", "labels_concensus.csv", write_wav,
                  write_file)


def test_labels_speakers_splits(msp_root: Path) -> None:
    loader = MspPodcastCorpus(msp_root)
    utts = {u.id: u for u in loader.scan()}
    assert {k: (u.speaker, u.label, u.split, u.extra["speaker_known"], u.extra["gender"])
            for k, u in utts.items()} == EXPECTED
    first = utts["MSP-PODCAST_0001_0008"]
    assert first.path == "Audios/MSP-PODCAST_0001_0008.wav"
    assert first.extra == {"label_raw": "N", "gender": "m", "speaker_known": True, "release": None,
                           "activation": 2.2, "valence": 4.0, "dominance": 2.6}
    assert utts["MSP-PODCAST_0002_0051"].extra["label_raw"] == "X"
    assert utts["MSP-PODCAST_0003_0004"].extra["label_raw"] == "O"
    opts = loader.options()
    assert (opts["audio_dir"], opts["labels_file"], opts["release"]) == ("Audios", "Labels/labels_consensus.csv", None)


def test_release_18_layout_and_misspelt_labels(msp18_root: Path) -> None:
    loader = MspPodcastCorpus(root=msp18_root)
    utts = loader.scan()
    assert len(utts) == len(EXPECTED)
    assert loader.options()["labels_file"] == "Labels/labels_concensus.csv"
    assert loader.options()["release"] == "1.8" and {u.extra["release"] for u in utts} == {"1.8"}
    assert utts[0].path == "AudioFiles/Audios_wav/MSP-PODCAST_0001_0008.wav"
    assert MspPodcastCorpus(msp18_root, release=1.10).options()["release"] == "1.1"  # unquoted YAML 1.10 is the float 1.1: quote tags
    assert MspPodcastCorpus(msp18_root, release="1.10").options()["release"] == "1.10"


def test_test3_and_hidden_labels(msp_root: Path, write_file) -> None:
    write_file(msp_root / "Labels" / "labels_consensus.csv",
               LABELS + "MSP-PODCAST_0005_0001.wav,,,,,Unknown,Unknown,Test3\n")
    u = MspPodcastCorpus(msp_root).scan()[-1]
    assert (u.label, u.split, u.extra["valence"], u.speaker) == (None, "test3", None, "unknown:MSP-PODCAST_0005_0001")


@pytest.mark.parametrize("bad_row, problem", [
    ("MSP-PODCAST_0009_0001.wav,N,2.2,4.0,2.6,30,Male\n", "expected 8 fields like the header, got 7"),
    ("MSP-PODCAST_0009_0001.wav,N,high,4.0,2.6,30,Male,Train\n", "column 'EmoAct': expected a number"),
    ("MSP-PODCAST_0009_0001.wav,Q,2.2,4.0,2.6,30,Male,Train\n", "unknown EmoClass code 'Q'"),
    ("MSP-PODCAST_0009_0001.wav,N,2.2,4.0,2.6,30,Male,Validation\n", "unknown Split_Set 'Validation'"),
    ("MSP-PODCAST_0001_0008.wav,N,2.2,4.0,2.6,30,Male,Train\n", "second row for MSP-PODCAST_0001_0008.wav"),
])
def test_malformed_row_names_file_and_line(msp_root: Path, write_file, bad_row: str, problem: str) -> None:
    write_file(msp_root / "Labels" / "labels_consensus.csv", LABELS + bad_row)
    with pytest.raises(DataError, match=rf"labels_consensus\.csv:8: {problem}"):
        MspPodcastCorpus(msp_root).scan()


def test_missing_column(msp_root: Path, write_file) -> None:
    write_file(msp_root / "Labels" / "labels_consensus.csv", LABELS.replace(",Split_Set", ",Partition"))
    with pytest.raises(DataError, match=r"labels_consensus\.csv:1: header lacks column\(s\) \['Split_Set'\]"):
        MspPodcastCorpus(msp_root).scan()


def test_no_layout_found(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no MSP-Podcast audio folder"):
        MspPodcastCorpus(tmp_path)


def test_prepare_fills_durations(msp18_root: Path, tmp_path: Path) -> None:
    report = prepare_manifest(MspPodcastCorpus(msp18_root), tmp_path / "out")
    utts = read_manifest(report.manifest)
    assert [u.duration for u in utts] == pytest.approx([0.1 + 0.05 * i for i in range(len(EXPECTED))])
    assert {u.sample_rate for u in utts} == {16000}
    assert utts[2].to_dict()["speaker_known"] is False
