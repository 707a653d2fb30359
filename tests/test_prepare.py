"""The prepare stage: header-derived durations, idempotence, incremental header reads, bad audio."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deeptalk_ser.data.corpora.base import CorpusLoader
from deeptalk_ser.data.corpora.emodb import EmoDBCorpus
from deeptalk_ser.utils.errors import AudioError, DataError
from deeptalk_ser.data.manifest import Utterance, read_manifest
from deeptalk_ser.data.prepare import load_prepared, prepare_manifest, read_header


class FolderLoader(CorpusLoader):
    """Every ``*.wav`` directly in ``root``, speaker = first character of the stem (unregistered)."""

    def scan(self) -> list[Utterance]:
        return [Utterance(id=p.stem, path=p.name, speaker=p.stem[0], label="neutral")
                for p in sorted(self.root.glob("*.wav"))]


@pytest.fixture
def folder(tmp_path, write_wav) -> Path:
    root = tmp_path / "corpus"
    write_wav(root / "a1.wav", 0.5, 16000)
    write_wav(root / "b1.wav", 1.25, 8000)
    write_wav(root / "c1.wav", 2.0, 22050)
    return root


def _by_id(utts):
    return {u.id: u for u in utts}


def test_durations_and_rates_from_headers_and_absolute_paths(folder, tmp_path):
    utts, report = load_prepared(FolderLoader(folder), tmp_path / "out")
    assert not report.reused and report.headers_read == 3 and report.n_utterances == 3
    by = _by_id(utts)
    assert by["a1"].duration == pytest.approx(0.5) and by["a1"].sample_rate == 16000
    assert by["b1"].duration == pytest.approx(1.25) and by["b1"].sample_rate == 8000
    assert by["c1"].duration == pytest.approx(2.0) and by["c1"].sample_rate == 22050
    for u in utts:
        assert Path(u.path).is_absolute()
        assert Path(u.path) == (folder / f"{u.id}.wav").resolve()


def test_second_run_is_reused_without_reading_headers(folder, tmp_path):
    out = tmp_path / "out"
    first = prepare_manifest(FolderLoader(folder), out)
    text = first.manifest.read_text()
    second = prepare_manifest(FolderLoader(folder), out)
    assert second.reused is True and second.headers_read == 0 and second.n_utterances == 3
    assert second.manifest.read_text() == text


def test_changed_file_rereads_only_its_header(folder, tmp_path, write_wav):
    out = tmp_path / "out"
    prepare_manifest(FolderLoader(folder), out)
    write_wav(folder / "b1.wav", 3.0, 8000)  # new size -> new stat key
    report = prepare_manifest(FolderLoader(folder), out)
    assert not report.reused and report.headers_read == 1
    by = _by_id(read_manifest(report.manifest))
    assert by["b1"].duration == pytest.approx(3.0)
    assert by["a1"].duration == pytest.approx(0.5)  # from the header cache


def test_touched_file_of_same_size_is_reread(folder, tmp_path):
    out = tmp_path / "out"
    prepare_manifest(FolderLoader(folder), out)
    st = (folder / "a1.wav").stat()
    os.utime(folder / "a1.wav", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    report = prepare_manifest(FolderLoader(folder), out)
    assert not report.reused and report.headers_read == 1


def test_added_file_reads_only_the_new_header(folder, tmp_path, write_wav):
    out = tmp_path / "out"
    prepare_manifest(FolderLoader(folder), out)
    write_wav(folder / "d1.wav", 0.75, 16000)
    report = prepare_manifest(FolderLoader(folder), out)
    assert not report.reused and report.headers_read == 1 and report.n_utterances == 4
    assert _by_id(read_manifest(report.manifest))["d1"].duration == pytest.approx(0.75)


def test_emodb_tree_prepares_30_rows(emodb_tree, tmp_path):
    utts, report = load_prepared(EmoDBCorpus(emodb_tree), tmp_path / "out")
    assert report.n_utterances == 30 and report.headers_read == 30
    assert {u.sample_rate for u in utts} == {16000}
    assert all(u.duration == pytest.approx(1.2) for u in utts)


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _garbage(p: Path) -> None:
    p.write_bytes(b"this is definitely not a RIFF file " * 20)


def _truncated_in_header(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:30])


def _header_only(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:44])  # canonical 44-byte PCM header, zero frames


@pytest.mark.parametrize("damage", [_empty, _garbage, _truncated_in_header, _header_only])
def test_bad_audio_raises_audio_error_naming_the_file(folder, tmp_path, damage):
    damage(folder / "b1.wav")
    with pytest.raises(AudioError) as ei:
        prepare_manifest(FolderLoader(folder), tmp_path / "out")
    assert ei.value.path.endswith("b1.wav")
    assert "b1.wav" in str(ei.value)
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


@pytest.mark.parametrize("damage", [_empty, _garbage])
def test_read_header_errors_name_the_file(tmp_path, write_wav, damage):
    p = write_wav(tmp_path / "x.wav", 0.1, 16000)
    damage(p)
    with pytest.raises(AudioError, match="x.wav"):
        read_header(p)


def test_missing_file_is_an_audio_error(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        read_header(tmp_path / "gone.wav")


def test_on_error_skip_continues_and_reports(folder, tmp_path):
    _garbage(folder / "b1.wav")
    out = tmp_path / "out"
    utts, report = load_prepared(FolderLoader(folder), out, on_error="skip")
    assert sorted(u.id for u in utts) == ["a1", "c1"]
    assert report.n_utterances == 2
    assert len(report.skipped) == 1
    assert report.skipped[0]["id"] == "b1" and report.skipped[0]["path"].endswith("b1.wav")
    assert report.skipped[0]["reason"]
    again = prepare_manifest(FolderLoader(folder), out, on_error="skip")
    assert again.reused and again.skipped == report.skipped


def test_on_error_skip_then_repaired_file_is_included(folder, tmp_path, write_wav):
    _garbage(folder / "b1.wav")
    out = tmp_path / "out"
    prepare_manifest(FolderLoader(folder), out, on_error="skip")
    write_wav(folder / "b1.wav", 1.0, 8000)
    report = prepare_manifest(FolderLoader(folder), out, on_error="skip")
    assert report.n_utterances == 3 and report.skipped == [] and report.headers_read == 1


def test_all_files_bad_with_skip_is_a_data_error(folder, tmp_path):
    for p in folder.glob("*.wav"):
        _empty(p)
    with pytest.raises(DataError, match="no usable utterances"):
        prepare_manifest(FolderLoader(folder), tmp_path / "out", on_error="skip")


def test_bad_on_error_value(folder, tmp_path):
    with pytest.raises(ValueError, match="on_error"):
        prepare_manifest(FolderLoader(folder), tmp_path / "out", on_error="ignore")


def test_malformed_file_names_stop_or_are_skipped_and_listed(tmp_path, write_wav):
    """``data.on_error=skip`` also covers records the loader refuses (file name, label code)."""
    root = tmp_path / "emodb"
    write_wav(root / "wav" / "03a01Wa.wav", 0.5, 16000)
    write_wav(root / "wav" / "03a01Xa.wav", 0.5, 16000)  # X: no EmoDB emotion
    write_wav(root / "wav" / "notes.wav", 0.5, 16000)  # not an EmoDB name
    write_wav(root / "wav" / "08a02Na.WAV", 0.5, 16000)  # upper-case extension: accepted
    with pytest.raises(DataError, match="emotion letter"):
        prepare_manifest(EmoDBCorpus(root), tmp_path / "m1")
    report = prepare_manifest(EmoDBCorpus(root), tmp_path / "m2", on_error="skip")
    assert report.n_utterances == 2
    assert sorted(s["id"] for s in report.skipped) == ["03a01Xa", "notes"]
    assert all(s["path"].endswith(".wav") and s["reason"] for s in report.skipped)
    again = prepare_manifest(EmoDBCorpus(root), tmp_path / "m2", on_error="skip")
    assert again.reused and sorted(s["id"] for s in again.skipped) == ["03a01Xa", "notes"]
