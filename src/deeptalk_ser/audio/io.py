"""Reading audio with soundfile (wav/flac/ogg); every failure names the file and the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import AudioError


def load_audio(path: str | Path, expected_frames: int | None = None) -> tuple[np.ndarray, int]:
    """Return (mono float32 waveform in [-1, 1], sample rate).

    Multi-channel audio is mixed down by averaging channels. ``expected_frames`` (from the
    manifest header read) lets us detect a file truncated after the manifest was built.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "audio file not found")
    if path.stat().st_size == 0:
        raise AudioError(path, "audio file is empty (0 bytes)")
    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:  # type: ignore[attr-defined]
        raise AudioError(path, f"unreadable audio ({exc})") from exc
    if wav.shape[0] == 0:
        raise AudioError(path, "audio file holds no samples")
    if expected_frames is not None and wav.shape[0] < expected_frames:
        raise AudioError(path, f"truncated: {wav.shape[0]} samples, header promised {expected_frames}")
    mono = wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]
    if not np.all(np.isfinite(mono)):
        raise AudioError(path, "audio holds NaN or inf samples")
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)
