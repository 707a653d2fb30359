"""RAVDESS loader on a fixture tree in the release layout (Actor_XX/MM-VV-EE-II-SS-RR-AA.wav)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deeptalk_ser.data.corpora.ravdess import RavdessCorpus
from deeptalk_ser.utils.errors import DataError

FILES = {  # relative path -> (speaker, label, vocal channel, intensity, gender)
    "Actor_01/03-01-01-01-01-01-01.wav": ("01", "neutral", "speech", "normal", "m"),
    "Actor_01/03-01-05-02-01-02-01.wav": ("01", "angry", "speech", "strong", "m"),
    "Actor_01/03-02-03-01-02-01-01.wav": ("01", "happy", "song", "normal", "m"),
    "Actor_02/03-01-02-01-02-01-02.wav": ("02", "calm", "speech", "normal", "f"),
    "Actor_02/03-01-08-02-01-01-02.wav": ("02", "surprise", "speech", "strong", "f"),
    "Actor_24/03-02-06-02-02-02-24.wav": ("24", "fear", "song", "strong", "f"),
}
#: A full audio-video take (modality 01), only kept when the modality filter is off.
AV_FILE = "Actor_24/01-01-07-01-01-01-24.wav"


@pytest.fixture
def ravdess_root(tmp_path: Path, write_wav) -> Path:
    root = tmp_path / "RAVDESS"
    for rel in [*FILES, AV_FILE]:
        write_wav(root / rel, seconds=0.05, sr=48000)
    (root / "Actor_01" / "notes.txt").write_text("not audio")
    return root


def _table(utts) -> dict:
    return {u.path: (u.speaker, u.label, u.extra["vocal_channel"], u.extra["intensity"], u.extra["gender"])
            for u in utts}


def test_default_is_audio_only_speech(ravdess_root: Path) -> None:
    utts = RavdessCorpus(root=ravdess_root).scan()
    assert _table(utts) == {k: v for k, v in FILES.items() if v[2] == "speech"}
    angry = next(u for u in utts if u.id == "03-01-05-02-01-02-01")
    assert angry.split is None
    assert angry.extra == {"label_raw": "05", "gender": "m", "vocal_channel": "speech", "intensity": "strong",
                           "statement": "01", "repetition": "02", "modality": "03"}


def test_vocal_channel_and_modality_options(ravdess_root: Path) -> None:
    assert _table(RavdessCorpus(ravdess_root, vocal_channel="song").scan()) == {
        k: v for k, v in FILES.items() if v[2] == "song"}
    assert _table(RavdessCorpus(ravdess_root, vocal_channel="both").scan()) == FILES
    everything = RavdessCorpus(ravdess_root, vocal_channel="both", modality=None)
    assert len(everything.scan()) == len(FILES) + 1
    assert RavdessCorpus(ravdess_root, modality=3).options()["modality"] == "03"
    with pytest.raises(ValueError, match="vocal_channel"):
        RavdessCorpus(ravdess_root, vocal_channel="speaking")


@pytest.mark.parametrize("bad, problem", [
    ("Actor_02/03-01-05-01-01-01-01.wav", "actor 01 in the file name but the folder is Actor_02"),
    ("Actor_02/03-01-09-01-01-01-02.wav", "unknown RAVDESS emotion code '09'"),
    ("Actor_02/03-01-05-01-01-03-02.wav", "repetition code '03' is not 01 or 02"),
    ("Actor_02/03-01-05-01.wav", "file name does not follow"),
])
def test_bad_file_name_is_named(ravdess_root: Path, write_wav, bad: str, problem: str) -> None:
    write_wav(ravdess_root / bad)
    with pytest.raises(DataError, match=rf"{Path(bad).name}: {problem}"):
        RavdessCorpus(ravdess_root).scan()


def test_root_without_actor_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no Actor_XX folders"):
        RavdessCorpus(tmp_path).scan()
