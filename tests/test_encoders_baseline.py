"""The GE2E encoder (against resemblyzer's reference where importable) and eGeMAPS.

GE2E test names say "speaker_lstm": the usual filter `-k "not e2e"` (for end-to-end tests)
matches any name containing "ge2e" and would silently deselect them.
"""

from __future__ import annotations

import numpy as np
import pytest

from deeptalk_ser.embedding.encoders.egemaps import EGeMAPSEncoder
from deeptalk_ser.embedding.encoders.ge2e import GE2EEncoder

FRONTEND = dict(sample_rate=16000, normalize_dbfs=-30, vad=dict(enabled=True))


@pytest.fixture(scope="module")
def ge2e():
    pytest.importorskip("librosa")
    try:
        return GE2EEncoder(frontend=FRONTEND)
    except FileNotFoundError as exc:  # resemblyzer wheel (weights) not installed
        pytest.skip(str(exc))


@pytest.fixture
def two_seconds(speech_signal) -> np.ndarray:
    return speech_signal(2.0, 16000)


def test_speaker_lstm_utterance_embedding_is_256d_unit_norm(ge2e, two_seconds):
    assert ge2e.embedding_dim == 256 and ge2e.sample_rate == 16000
    wav = ge2e.frontend(two_seconds, 16000)
    assert 0.5 * 16000 < len(wav) <= 32000  # VAD keeps the voiced signal
    emb = ge2e.embed_utterance(wav)
    assert emb.shape == (256,) and emb.dtype == np.float32
    assert np.all(np.isfinite(emb)) and np.all(emb >= 0)  # ReLU before the L2 norm
    assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-5)
    assert ge2e.embed_utterance(np.zeros(0, np.float32)) is None


def test_speaker_lstm_windows_are_unit_norm(ge2e, two_seconds):
    win = ge2e.embed_windowed(two_seconds, 16000, 8000)
    assert win.shape == (3, 256)  # 1 + (32000 - 16000) // 8000
    np.testing.assert_allclose(np.linalg.norm(win, axis=1), 1.0, atol=1e-5)


def test_speaker_lstm_matches_resemblyzer(ge2e, two_seconds):
    pytest.importorskip("resemblyzer")
    from resemblyzer import VoiceEncoder, preprocess_wav

    ref_wav = preprocess_wav(two_seconds, source_sr=16000)
    ours_wav = ge2e.frontend(two_seconds, 16000)
    assert len(ours_wav) == len(ref_wav)
    np.testing.assert_allclose(ours_wav, ref_wav, atol=1e-5)
    ref = VoiceEncoder("cpu", verbose=False).embed_utterance(ref_wav)
    np.testing.assert_allclose(ge2e.embed_utterance(ours_wav), ref, atol=1e-4)


# resemblyzer compute_partial_slices by hand: 160 samples per mel frame, step round(16000/1.3/160) = 77
# frames, n_frames = ceil((n + 1) / 160); the last partial is dropped when it covers < 75 % real audio.
@pytest.mark.parametrize("n_samples,starts", [
    (32000, [0, 77]),       # 2 s: 201 frames; last covers (32000 - 12320) / 25600 = 0.77
    (16000, [0]),           # 1 s: one (zero-padded) partial
    (48000, [0, 77, 154]),  # 3 s: last covers (48000 - 24640) / 25600 = 0.91
    (31000, [0]),           # second partial would cover (31000 - 12320) / 25600 = 0.73 < 0.75
])
def test_speaker_lstm_partial_slices(ge2e, n_samples, starts):
    assert ge2e.partial_slices(n_samples) == [slice(s, s + 160) for s in starts]


@pytest.mark.parametrize("n_samples", [1, 8000, 25599, 31519, 31520, 32000, 57777, 160000])
def test_speaker_lstm_partial_slices_match_resemblyzer(ge2e, n_samples):
    pytest.importorskip("resemblyzer")
    from resemblyzer import VoiceEncoder

    _, mel_slices = VoiceEncoder.compute_partial_slices(n_samples, 1.3, 0.75)
    assert ge2e.partial_slices(n_samples) == mel_slices


def test_speaker_lstm_refuses_other_rates():
    with pytest.raises(ValueError, match="16 kHz"):
        GE2EEncoder(frontend=dict(sample_rate=8000))


@pytest.fixture(scope="module")
def egemaps():
    pytest.importorskip("opensmile")
    return EGeMAPSEncoder(frontend=dict(sample_rate=16000))


def test_egemaps_88d_finite_for_noise(egemaps):
    noise = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    emb = egemaps.embed_utterance(noise)
    assert emb.shape == (88,) and emb.dtype == np.float32 and np.all(np.isfinite(emb))
    loud = list(egemaps.smile.feature_names).index("loudness_sma3_amean")
    assert emb[loud] > 0
    assert egemaps.embed_utterance(10 * noise)[loud] > emb[loud]
    assert egemaps.embed_utterance(noise[:1000]) is None  # shorter than min_duration_s = 0.1 s
    assert egemaps.embed_windows(np.stack([noise[:8000], noise[8000:]])).shape == (2, 88)


def test_egemaps_silent_input_has_no_embedding(egemaps):
    """Digital silence gave an all-zero row that passed for data; it is now dropped and counted."""
    assert egemaps.embed_utterance(np.zeros(16000, np.float32)) is None
    windows = egemaps.embed_windows(np.stack([np.zeros(8000, np.float32), np.full(8000, 0.01, np.float32)]))
    assert np.isnan(windows[0]).all() and np.isfinite(windows[1]).all()


@pytest.mark.parametrize("f0", [120.0, 200.0])
def test_egemaps_pitch_of_a_voiced_signal(egemaps, speech_signal, f0):
    emb = egemaps.embed_utterance(speech_signal(1.0, 16000, f0=f0))
    mean_st = emb[list(egemaps.smile.feature_names).index("F0semitoneFrom27.5Hz_sma3nz_amean")]
    assert mean_st == pytest.approx(12 * np.log2(f0 / 27.5), abs=0.5)  # semitones above 27.5 Hz
