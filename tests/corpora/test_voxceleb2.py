"""VoxCeleb2 loader, m4a decoding (PyAV) and the resumable m4a -> WAV conversion, on real AAC files."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("av", reason="m4a support needs PyAV (pip install av)")

from deeptalk_ser.data.audio.m4a import decode_m4a, read_m4a_header  # noqa: E402
from deeptalk_ser.data.corpora.voxceleb2 import VoxCeleb2Corpus, convert_voxceleb2, main  # noqa: E402
from deeptalk_ser.utils.errors import AudioError, DataError  # noqa: E402

from .speaker_fixtures import REPO_ROOT, build_voxceleb2, instantiate_data_config, write_m4a, write_text  # noqa: E402

DEV_FILES = ["id00012/21Uxsk56VDQ/00001", "id00012/21Uxsk56VDQ/00002", "id00015/0fijmz4vTVU/00001"]


@pytest.fixture(scope="module")
def vox2_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Encoded once per module; tests that modify the tree work on a copy."""
    return build_voxceleb2(tmp_path_factory.mktemp("vox2") / "voxceleb2")


@pytest.fixture
def vox2(vox2_template: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(vox2_template, tmp_path / "voxceleb2"))


def test_decode_m4a_length_and_rate(vox2_template: Path) -> None:
    path = vox2_template / "dev/aac/id00012/21Uxsk56VDQ/00001.m4a"
    wav, sr = decode_m4a(path)
    assert sr == 16000 and wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - 16000) <= 160  # 1 s within 10 ms (encoder priming/padding trimmed)
    assert 0.15 < float(np.sqrt(np.mean(wav[1000:-1000] ** 2))) < 0.25  # a 0.3-amplitude sine: RMS 0.21
    duration, hdr_sr = read_m4a_header(path)
    assert hdr_sr == 16000 and duration == pytest.approx(1.0, abs=0.01)
    assert len(wav) == pytest.approx(duration * sr, abs=1)


def test_decode_stereo_and_resample(tmp_path: Path) -> None:
    path = write_m4a(tmp_path / "stereo.m4a", seconds=0.5, sr=44100, channels=2)
    assert read_m4a_header(path) == (pytest.approx(0.5, abs=0.01), 44100)
    wav, sr = decode_m4a(path, sample_rate=16000)
    assert sr == 16000 and wav.ndim == 1 and abs(len(wav) - 8000) <= 80


def test_bad_m4a_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.m4a"
    garbage.write_bytes(b"\x00\x01not an mp4 at all" * 50)
    for fn in (decode_m4a, read_m4a_header):
        with pytest.raises(AudioError) as err:
            fn(garbage)
        assert err.value.path == str(garbage)
    (tmp_path / "empty.m4a").touch()
    with pytest.raises(AudioError, match="empty"):
        decode_m4a(tmp_path / "empty.m4a")
    with pytest.raises(AudioError, match="not found"):
        read_m4a_header(tmp_path / "missing.m4a")


def test_loader_m4a(vox2_template: Path) -> None:
    utts = VoxCeleb2Corpus(root=vox2_template).scan()
    assert [u.id for u in utts] == DEV_FILES
    u = utts[0]
    assert (u.path, u.speaker, u.split, u.corpus) == (
        "dev/aac/id00012/21Uxsk56VDQ/00001.m4a", "id00012", "dev", "voxceleb2")
    assert u.extra == {"video": "21Uxsk56VDQ", "gender": "m"}
    both = VoxCeleb2Corpus(vox2_template, subsets=["dev", "test"]).scan()
    assert Counter(u.split for u in both) == {"dev": 3, "test": 1}
    assert {u.speaker for u in both} == {"id00012", "id00015", "id00017"}


def test_loader_errors(vox2: Path) -> None:
    with pytest.raises(DataError, match="wav"):
        VoxCeleb2Corpus(vox2, audio="wav").scan()  # not converted yet
    with pytest.raises(ValueError):
        VoxCeleb2Corpus(vox2, audio="flac")
    (vox2 / "vox2_meta.csv").unlink()
    assert all("gender" not in u.extra for u in VoxCeleb2Corpus(vox2).scan())  # meta is optional
    write_text(vox2 / "vox2_meta.csv", "VoxCeleb2 ID ,VGGFace2 ID ,Gender ,Set \nid00012 ,n000012 ,m\n")
    with pytest.raises(DataError) as err:
        VoxCeleb2Corpus(vox2).scan()
    assert (err.value.path, err.value.line) == (str(vox2 / "vox2_meta.csv"), 2)


def test_convert_resumable_and_atomic(vox2: Path, tmp_path: Path) -> None:
    out = tmp_path / "converted"
    report = convert_voxceleb2(vox2, out, workers=2)
    assert (report.total, report.converted, report.already_done, report.failed) == (4, 4, 0, [])
    wav_path = out / "dev/wav/id00012/21Uxsk56VDQ/00001.wav"
    info = sf.info(str(wav_path))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert abs(info.frames - 16000) <= 160
    assert not list(out.rglob("*.tmp"))

    again = convert_voxceleb2(vox2, out, workers=1)
    assert (again.converted, again.already_done) == (0, 4)
    wav_path.unlink()
    resumed = convert_voxceleb2(vox2, out, workers=1)
    assert (resumed.converted, resumed.already_done) == (1, 3) and wav_path.is_file()

    utts = VoxCeleb2Corpus(out, subsets=["dev", "test"], audio="wav", meta_file=str(vox2 / "vox2_meta.csv")).scan()
    assert [u.id for u in utts if u.split == "dev"] == DEV_FILES
    assert utts[0].path == "dev/wav/id00012/21Uxsk56VDQ/00001.wav" and utts[0].extra["gender"] == "m"


def test_convert_reports_bad_files(vox2: Path, tmp_path: Path) -> None:
    bad = vox2 / "dev/aac/id00015/0fijmz4vTVU/00002.m4a"
    bad.write_bytes(b"broken")
    report = convert_voxceleb2(vox2, tmp_path / "out", workers=1, subsets=["dev"])
    assert (report.total, report.converted) == (4, 3)
    assert [src for src, _ in report.failed] == [str(bad)]
    assert not (tmp_path / "out/dev/wav/id00015/0fijmz4vTVU/00002.wav").exists()
    assert main(["convert", "--root", str(vox2), "--out", str(tmp_path / "out"), "--subsets", "dev"]) == 1


def test_cli_module(vox2: Path) -> None:
    """``python -m ... convert`` writes beside aac/ when --out is the corpus root."""
    proc = subprocess.run([sys.executable, "-m", "deeptalk_ser.data.corpora.voxceleb2", "convert", "--root", str(vox2),
                           "--out", str(vox2), "--workers", "2"], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "4 files: 4 converted" in proc.stdout
    assert len(VoxCeleb2Corpus(vox2, subsets=["dev", "test"], audio="wav").scan()) == 4


def test_hydra_config(vox2_template: Path) -> None:
    loader = instantiate_data_config("voxceleb2", vox2_template.parent)
    assert isinstance(loader, VoxCeleb2Corpus) and (loader.subsets, loader.audio) == (["dev"], "m4a")
    assert len(loader.scan()) == 3
