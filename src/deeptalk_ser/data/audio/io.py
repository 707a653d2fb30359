"""Reading audio: soundfile for wav/flac/ogg, PyAV for m4a (VoxCeleb2). Every failure names
the file and the problem; headers are read without decoding (for manifests at scale)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile as sf

from deeptalk_ser.data.audio.files import check_audio_file, check_wav_complete, is_m4a
from deeptalk_ser.data.audio.m4a import decode_m4a, read_m4a_header
from deeptalk_ser.utils.errors import AudioError

log = logging.getLogger(__name__)
#: float samples beyond this peak are mis-scaled (e.g. int16 values stored as float), not clipping
_MISSCALED_PEAK = 2.0
#: decoded AAC may differ from the declared length by up to one frame
_AAC_FRAME = 1024


def read_header(path: str | Path) -> tuple[float, int]:
    """(duration in s, sample rate) from the file header, no decoding."""
    path = check_audio_file(path)
    if is_m4a(path):
        return read_m4a_header(path)
    check_wav_complete(path)
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as exc:  # type: ignore[attr-defined]
        raise AudioError(path, f"unreadable audio header ({exc})") from exc
    if info.frames <= 0:
        raise AudioError(path, "audio file holds no samples")
    return info.frames / info.samplerate, int(info.samplerate)


def load_audio(path: str | Path, expected_frames: int | None = None) -> tuple[np.ndarray, int]:
    """Return (mono float32 waveform in [-1, 1], sample rate).

    Multi-channel audio is mixed down by averaging channels. ``expected_frames`` (from the
    manifest header read) lets us detect a file truncated after the manifest was built.
    """
    path = check_audio_file(path)
    tolerance = 0
    if is_m4a(path):
        mono, sr = decode_m4a(path)
        tolerance = _AAC_FRAME
    else:
        check_wav_complete(path)
        try:
            wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except (RuntimeError, sf.LibsndfileError) as exc:  # type: ignore[attr-defined]
            raise AudioError(path, f"unreadable audio ({exc})") from exc
        if wav.shape[0] == 0:
            raise AudioError(path, "audio file holds no samples")
        mono = wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]
    if expected_frames is not None and mono.shape[0] < expected_frames - tolerance:
        raise AudioError(path, f"truncated: {mono.shape[0]} samples, header promised {expected_frames}")
    if not np.all(np.isfinite(mono)):
        raise AudioError(path, "audio holds NaN or inf samples")
    peak = float(np.abs(mono).max())
    if peak > _MISSCALED_PEAK:
        log.warning("%s: float samples reach %.4g, far outside [-1, 1]: the file is mis-scaled (used as is; the "
                    "front end's level normalisation rescales it, raw-signal features such as eGeMAPS do not)",
                    path, peak)
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)
