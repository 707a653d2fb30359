"""Bring your own corpus: data=folder and data=manifest on generated trees."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from deeptalk_ser.data.corpora.user import FolderCorpus, ManifestCorpus
from deeptalk_ser.data.prepare import prepare_manifest
from deeptalk_ser.utils.errors import ConfigError, DataError

from .emotion_fixtures import build_label_folders, build_user_manifest
from .speaker_fixtures import instantiate_data_config, write_audio, write_text


def test_folder_corpus_labels_speakers_and_prepare(tmp_path: Path) -> None:
    build_label_folders(tmp_path / "my_recordings")
    loader = instantiate_data_config("folder", tmp_path)
    assert isinstance(loader, FolderCorpus)
    utts = loader.scan()
    assert Counter(u.label for u in utts) == {"angry": 6, "neutral": 6, "sad": 6}
    assert Counter(u.speaker for u in utts) == {"spk01": 6, "spk02": 6, "spk03": 6}
    assert utts[0].id == "angry/spk01_take0" and utts[0].path == "angry/spk01_take0.wav"
    report = prepare_manifest(loader, tmp_path / "m")
    assert report.n_utterances == 18


def test_folder_corpus_pattern_errors_and_label_map(tmp_path: Path) -> None:
    root = build_label_folders(tmp_path / "r", takes=1)
    write_audio(root / "angry" / "nospeaker.wav", seconds=0.2, sr=16000)
    with pytest.raises(DataError, match="speaker_pattern") as ei:
        FolderCorpus(root).scan()
    assert ei.value.path.endswith("nospeaker.wav")
    report = prepare_manifest(FolderCorpus(root, label_map={"angry": "anger_mapped"}), tmp_path / "m", on_error="skip")
    assert [s["id"] for s in report.skipped] == ["nospeaker"] and report.n_utterances == 9
    with pytest.raises(ConfigError, match="speaker_pattern"):
        FolderCorpus(root, speaker_pattern=r"^(\w+)_")  # no named group
    with pytest.raises(ConfigError, match="regular expression"):
        FolderCorpus(root, speaker_pattern=r"(?P<speaker>[")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_manifest_corpus_csv_and_jsonl(tmp_path: Path, suffix: str) -> None:
    csv_path = build_user_manifest(tmp_path / "my_corpus.csv")
    path = csv_path
    if suffix == ".jsonl":
        import csv
        import json

        rows = list(csv.DictReader(csv_path.open()))
        path = tmp_path / "my_corpus.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    utts = ManifestCorpus(path).scan()
    assert len(utts) == 9 and Counter(u.split for u in utts) == {"train": 6, "test": 3}
    assert utts[0].extra["mic"] == "lavalier" and utts[0].id == "audio/spk01/angry"
    assert prepare_manifest(ManifestCorpus(path), tmp_path / f"m{suffix}").n_utterances == 9


def test_manifest_corpus_names_bad_rows(tmp_path: Path) -> None:
    path = build_user_manifest(tmp_path / "t.csv")
    write_text(path, path.read_text() + "audio/spk01/angry.wav,,angry,train,x\n")
    with pytest.raises(DataError, match="row lacks \\['speaker'\\]") as ei:
        ManifestCorpus(path).scan()
    assert ei.value.line == 11
    loader = ManifestCorpus(path)
    loader.on_error = "skip"
    assert len(loader.scan()) == 9 and loader.rejected[0]["id"] == "line 11"
    write_text(path, "path,speaker\nx.wav,s\n")
    with pytest.raises(DataError, match="lacks column"):
        ManifestCorpus(path).scan()
    with pytest.raises(DataError, match="not found"):
        ManifestCorpus(tmp_path / "missing.csv")
