"""LibriSpeech loader on a fixture ``LibriSpeech/`` tree; expected values written by hand."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from deeptalk_ser.data.corpora.librispeech import LibriSpeechCorpus, read_speakers_txt
from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.data.prepare import prepare_manifest

from .speaker_fixtures import build_librispeech, instantiate_data_config, write_audio, write_text


@pytest.fixture
def libri(tmp_path: Path) -> Path:
    return build_librispeech(tmp_path / "LibriSpeech")


def test_default_subset(libri: Path) -> None:
    utts = LibriSpeechCorpus(root=libri).scan()
    assert [(u.id, u.speaker, u.split) for u in utts] == [
        ("14-208-0000", "14", "train-other-500"), ("14-208-0001", "14", "train-other-500")]
    assert utts[0].path == "train-other-500/14/208/14-208-0000.flac"
    assert utts[0].extra == {"gender": "f", "chapter": "208", "text": "AT LAST THE BEST AND MOST HELPFUL"}
    assert utts[0].label is None and utts[0].corpus == "librispeech"


def test_several_subsets(libri: Path) -> None:
    utts = LibriSpeechCorpus(libri, subsets=["train-clean-100", "train-other-500"]).scan()
    assert Counter(u.split for u in utts) == {"train-clean-100": 3, "train-other-500": 2}
    assert Counter(u.speaker for u in utts) == {"19": 2, "60": 1, "14": 2}
    by_id = {u.id: u for u in utts}
    assert by_id["60-121082-0000"].extra["gender"] == "m"  # the "|CBW|Simon" row parses
    assert "text" not in by_id["19-198-0001"].extra  # no transcript line: no text, no error
    assert by_id["19-198-0000"].extra["text"] == "NORTHANGER ABBEY"


def test_speakers_txt(libri: Path) -> None:
    assert read_speakers_txt(libri / "SPEAKERS.TXT") == {"14": "f", "19": "f", "60": "m", "84": "f"}
    path = write_text(libri / "SPEAKERS.TXT", ";ID |SEX\n14 | F | train-other-500 | 25.03 | K\n19 | X | a | 1 | P\n")
    with pytest.raises(DataError) as err:
        read_speakers_txt(path)
    assert (err.value.path, err.value.line) == (str(path), 3)


def test_malformed_transcript_names_file_and_line(libri: Path) -> None:
    trans = libri / "train-other-500/14/208/14-208.trans.txt"
    write_text(trans, "14-208-0000 AT LAST\n19-198-0000 WRONG CHAPTER\n")
    with pytest.raises(DataError) as err:
        LibriSpeechCorpus(libri).scan()
    assert (err.value.path, err.value.line) == (str(trans), 2)


def test_missing_transcript_file_is_fine(libri: Path) -> None:
    (libri / "train-other-500/14/208/14-208.trans.txt").unlink()
    assert [u.extra.get("text") for u in LibriSpeechCorpus(libri).scan()] == [None, None]


def test_layout_errors(libri: Path) -> None:
    stray = write_audio(libri / "train-other-500/14/208/14-999-0002.flac")
    with pytest.raises(DataError, match="14-208-<nnnn>.flac"):
        LibriSpeechCorpus(libri).scan()
    stray.unlink()
    write_audio(libri / "train-other-500/77/1/77-1-0000.flac")
    with pytest.raises(DataError, match="speaker 77"):
        LibriSpeechCorpus(libri).scan()
    with pytest.raises(DataError, match="missing"):
        LibriSpeechCorpus(libri, subsets=["test-clean"]).scan()
    with pytest.raises(ValueError, match="train-clean-500"):
        LibriSpeechCorpus(libri, subsets=["train-clean-500"])


def test_prepare_flac(libri: Path, tmp_path: Path) -> None:
    report = prepare_manifest(LibriSpeechCorpus(libri, subsets=["dev-clean", "train-clean-100"]), tmp_path / "out")
    assert (report.n_utterances, report.headers_read) == (4, 4)


def test_hydra_config(libri: Path) -> None:
    loader = instantiate_data_config("librispeech", libri.parent)
    assert isinstance(loader, LibriSpeechCorpus) and loader.subsets == ["train-other-500"]
    assert loader.root == libri and len(loader.scan()) == 2
