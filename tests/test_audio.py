"""Audio reading (``audio/io.py``) and the signal front end (``audio/frontend.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.signal as ss
import soundfile as sf

from deeptalk_ser.data.audio import AudioFrontend, VADConfig, load_audio
from deeptalk_ser.data.audio.frontend import normalize_level, resample, voiced_mask
from deeptalk_ser.utils.errors import AudioError


# --------------------------------------------------------------------------- io


def test_mono_int16_is_float32_in_unit_range(tmp_path, write_wav):
    p = write_wav(tmp_path / "m.wav", 0.5, 16000, freq=440.0, amplitude=0.5)
    wav, sr = load_audio(p)
    assert sr == 16000 and wav.dtype == np.float32 and wav.shape == (8000,)
    t = np.arange(8000) / 16000
    np.testing.assert_allclose(wav, 0.5 * np.sin(2 * np.pi * 440 * t), atol=1 / 32767 + 1e-6)


def test_stereo_mixdown_is_the_mean_of_channels(tmp_path):
    n = 1000
    left = np.full(n, 0.5, dtype=np.float32)
    right = np.linspace(-0.25, 0.25, n, dtype=np.float32)
    p = tmp_path / "st.wav"
    sf.write(str(p), np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    wav, sr = load_audio(p)
    assert sr == 8000 and wav.shape == (n,)
    np.testing.assert_allclose(wav, (left + right) / 2, rtol=0, atol=1e-7)
    assert wav[0] == pytest.approx(0.125) and wav[-1] == pytest.approx(0.375)


def test_three_channel_mixdown_from_helper(tmp_path, write_wav):
    # channel c holds (c + 1) * 0.1 * sine, so the mean is 0.2 * sine
    p = write_wav(tmp_path / "3ch.wav", 0.25, 16000, freq=300.0, channels=3, subtype="FLOAT")
    assert sf.info(str(p)).channels == 3
    wav, _ = load_audio(p)
    t = np.arange(4000) / 16000
    np.testing.assert_allclose(wav, 0.2 * np.sin(2 * np.pi * 300 * t), atol=1e-6)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(AudioError, match="empty") as ei:
        load_audio(p)
    assert ei.value.path == str(p)


def test_garbage_bytes(tmp_path):
    p = tmp_path / "garbage.wav"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(AudioError) as ei:
        load_audio(p)
    assert "garbage.wav" in str(ei.value)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "missing.wav")


def test_header_only_file_holds_no_samples(tmp_path, write_wav):
    p = write_wav(tmp_path / "h.wav", 0.1, 16000)
    p.write_bytes(p.read_bytes()[:44])  # the header still promises 0.1 s of data
    with pytest.raises(AudioError, match="truncated"):
        load_audio(p)


def test_file_shorter_than_its_manifest_detected_with_expected_frames(tmp_path, write_wav):
    p = write_wav(tmp_path / "t.wav", 1.0, 16000)  # rewritten shorter after the manifest was made
    write_wav(p, 1000 / 16000, 16000)
    assert len(load_audio(p)[0]) == 1000  # a complete (shorter) file
    with pytest.raises(AudioError, match="truncated") as ei:
        load_audio(p, expected_frames=16000)
    assert "t.wav" in str(ei.value)
    wav, _ = load_audio(p, expected_frames=1000)  # exactly as promised: fine
    assert len(wav) == 1000


def test_nan_samples_refused(tmp_path):
    p = tmp_path / "nan.wav"
    sf.write(str(p), np.array([0.1, np.nan, 0.2, 0.0], dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN") as ei:
        load_audio(p)
    assert ei.value.path == str(p)


# --------------------------------------------------------------------- resample


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)])


@pytest.mark.parametrize("sr_in,sr_out", [(44100, 16000), (22050, 16000), (8000, 16000)])
def test_resample_length_rate_and_frequency(sr_in, sr_out):
    t = np.arange(sr_in) / sr_in  # exactly 1 s
    x = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    y = resample(x, sr_in, sr_out)
    assert y.dtype == np.float32
    assert len(y) == sr_out
    assert _peak_hz(y, sr_out) == pytest.approx(1000, abs=2)
    assert np.sqrt(np.mean(y[200:-200] ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.02)


def test_resample_same_rate_is_identity():
    x = np.arange(10, dtype=np.float32)
    assert resample(x, 16000, 16000) is x


def test_frontend_resamples_22050_to_16000():
    fe = AudioFrontend(sample_rate=16000)
    x = np.zeros(22050 * 2, dtype=np.float32)
    assert len(fe(x, 22050)) == 32000


# ----------------------------------------------------------------------- level


def _sine_at_dbfs(dbfs: float, sr: int = 16000) -> np.ndarray:
    # a sine's RMS is amplitude / sqrt(2); dBFS here is RMS relative to full scale 1.0
    amp = 10 ** (dbfs / 20) * np.sqrt(2)
    t = np.arange(sr) / sr
    return (amp * np.sin(2 * np.pi * 250 * t)).astype(np.float32)


def _rms_dbfs(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def test_quiet_sine_raised_to_target():
    x = _sine_at_dbfs(-40)
    assert _rms_dbfs(x) == pytest.approx(-40, abs=0.01)
    y = normalize_level(x, -30, increase_only=True)
    assert _rms_dbfs(y) == pytest.approx(-30, abs=0.01)
    np.testing.assert_allclose(y, x * 10 ** 0.5, rtol=1e-5)  # +10 dB = x3.162


def test_loud_sine_untouched_when_increase_only():
    x = _sine_at_dbfs(-20)
    y = normalize_level(x, -30, increase_only=True)
    np.testing.assert_array_equal(y, x)


def test_loud_sine_lowered_when_not_increase_only():
    y = normalize_level(_sine_at_dbfs(-20), -30, increase_only=False)
    assert _rms_dbfs(y) == pytest.approx(-30, abs=0.01)


def test_silence_unchanged_by_level():
    x = np.zeros(100, dtype=np.float32)
    np.testing.assert_array_equal(normalize_level(x, -30), x)


def test_frontend_applies_level():
    fe = AudioFrontend(sample_rate=16000, normalize_dbfs=-30)
    assert _rms_dbfs(fe(_sine_at_dbfs(-45), 16000)) == pytest.approx(-30, abs=0.01)


# ------------------------------------------------------------------------- VAD


def _burst_noise(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Band-limited noise + 200 Hz tone, gated on/off at 5 Hz: a crude speech stand-in."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    b, a = ss.butter(4, [300, 3400], btype="band", fs=sr)
    noise = ss.lfilter(b, a, rng.standard_normal(len(t)))
    noise /= np.abs(noise).max()
    gate = (np.sin(2 * np.pi * 5 * t) > 0).astype(float)
    return (0.3 * gate * (0.5 * noise + 0.5 * np.sin(2 * np.pi * 200 * t))).astype(np.float32)


@pytest.mark.parametrize("sr", [16000, 8000])
def test_vad_mask_removes_most_silence(sr):
    sil = np.zeros(sr, dtype=np.float32)
    x = np.concatenate([sil, _burst_noise(1.0, sr), sil])
    mask = voiced_mask(x, sr, VADConfig(enabled=True))
    assert mask.dtype == bool and len(mask) == 3 * sr  # 3 s is a whole number of 30 ms windows
    assert mask[:sr].mean() < 0.25 and mask[2 * sr:].mean() < 0.25
    assert mask[sr:2 * sr].mean() > 0.9
    fe = AudioFrontend(sample_rate=sr, vad=dict(enabled=True))
    y = fe(x, sr)
    assert 0.9 * sr < len(y) < 1.5 * sr


def test_vad_mask_length_trimmed_to_whole_windows():
    mask = voiced_mask(np.zeros(1000, dtype=np.float32), 16000, VADConfig(enabled=True))
    assert len(mask) == 960 and not mask.any()  # 2 windows of 480 samples
    assert len(voiced_mask(np.zeros(100, dtype=np.float32), 16000, VADConfig(enabled=True))) == 0


def test_vad_refuses_22050():
    x = np.zeros(22050, dtype=np.float32)
    with pytest.raises(ValueError, match="22050"):
        voiced_mask(x, 22050, VADConfig(enabled=True))
    with pytest.raises(ValueError, match="22050"):
        AudioFrontend(sample_rate=22050, vad=VADConfig(enabled=True))(x, 22050)


def test_frontend_vad_config_from_mapping():
    fe = AudioFrontend(vad={"enabled": True, "aggressiveness": 2})
    assert isinstance(fe.vad, VADConfig) and fe.vad.aggressiveness == 2
    assert fe.describe()["vad"]["aggressiveness"] == 2


def test_audio_error_survives_pickling():
    """DataLoader workers send AudioErrors to the main process by pickling them."""
    import pickle

    from deeptalk_ser.utils.errors import DataError

    err = pickle.loads(pickle.dumps(AudioError("/data/x.wav", "unreadable audio", line=7)))
    assert type(err) is AudioError
    assert (err.path, err.problem, err.line) == ("/data/x.wav", "unreadable audio", 7)
    assert str(err) == "/data/x.wav:7: unreadable audio"
    plain = pickle.loads(pickle.dumps(DataError("/m.jsonl", "bad")))
    assert type(plain) is DataError and str(plain) == "/m.jsonl: bad"


def _truncated_wav(path: Path, keep_data_bytes: int) -> Path:
    """1 s of 44.1 kHz PCM16 (the header promises 88,200 data bytes), cut after ``keep_data_bytes``."""
    sf.write(str(path), np.zeros(44100, dtype=np.float32) + 0.1, 44100, subtype="PCM_16")
    with open(path, "r+b") as fh:
        fh.truncate(44 + keep_data_bytes)
    return path


def test_truncated_wav_refused_at_header_and_decode(tmp_path):
    from deeptalk_ser.data.audio.io import load_audio, read_header

    p = _truncated_wav(tmp_path / "cut.wav", 44078)
    with pytest.raises(AudioError, match="promises 88200 data bytes, the file holds 44078") as ei:
        read_header(p)
    assert ei.value.path == str(p)
    with pytest.raises(AudioError, match="truncated"):
        load_audio(p)
    whole = tmp_path / "whole.wav"
    sf.write(str(whole), np.zeros(44100, dtype=np.float32), 44100, subtype="PCM_16")
    assert read_header(whole) == (1.0, 44100)


def test_truncated_wav_skipped_and_listed_at_prepare(tmp_path, write_wav):
    from deeptalk_ser.data.corpora.base import CorpusLoader
    from deeptalk_ser.data.manifest import Utterance
    from deeptalk_ser.data.prepare import prepare_manifest

    class Flat(CorpusLoader):
        def scan(self):
            return [Utterance(id=p.stem, path=p.name, speaker="s") for p in sorted(self.root.glob("*.wav"))]

    write_wav(tmp_path / "c" / "ok.wav", 0.5, 16000)
    _truncated_wav(tmp_path / "c" / "cut.wav", 1000)
    report = prepare_manifest(Flat(tmp_path / "c"), tmp_path / "m", on_error="skip")
    assert report.n_utterances == 1
    assert [s["id"] for s in report.skipped] == ["cut"] and "truncated" in report.skipped[0]["reason"]


def test_truncated_flac_refused_at_decode(tmp_path):
    from deeptalk_ser.data.audio.io import load_audio, read_header

    p = tmp_path / "cut.flac"
    rng = np.random.default_rng(0)
    sf.write(str(p), (0.3 * rng.standard_normal(16000)).astype(np.float32), 8000, subtype="PCM_16")
    size = p.stat().st_size
    with open(p, "r+b") as fh:
        fh.truncate(size // 2)
    duration, sr = read_header(p)  # FLAC's STREAMINFO still promises 2 s
    with pytest.raises(AudioError, match="truncated|unreadable"):
        load_audio(p, expected_frames=round(duration * sr))


def test_misscaled_float_wav_is_reported(tmp_path, caplog):
    p = tmp_path / "loud.wav"
    sf.write(str(p), np.array([0.0, 1000.0, -1000.0, 5.0] * 100, dtype=np.float32), 16000, subtype="FLOAT")
    with caplog.at_level("WARNING", logger="deeptalk_ser.data.audio.io"):
        wav, _ = load_audio(p)
    assert wav.max() == 1000.0
    assert "loud.wav" in caplog.text and "mis-scaled" in caplog.text
