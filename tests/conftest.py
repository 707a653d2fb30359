"""Generated fixtures shared by the unit tests: tiny deterministic WAV files and corpus trees.

Nothing here reads real corpora; every file is written into ``tmp_path`` with soundfile.
(``tests/corpora/conftest.py`` has its own ``write_wav`` fixture, which takes precedence there.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf

#: EmoDB fixture layout: speakers x texts x emotion letters, 1.2 s at 16 kHz each.
EMODB_SPEAKERS = ("03", "08", "09")
EMODB_TEXTS = ("a01", "a02")
EMODB_LETTERS = ("W", "T", "F", "N", "L")
EMODB_SR = 16000
EMODB_SECONDS = 1.2


def tone(seconds: float, sr: int, freq: float = 220.0, amplitude: float = 0.1, channels: int = 1) -> np.ndarray:
    """A sine of ``freq`` Hz; channel ``c`` (0-based) has amplitude ``amplitude * (c + 1)``.
    Returns (n,) for mono, (n, channels) otherwise."""
    t = np.arange(int(round(seconds * sr))) / sr
    mono = np.sin(2 * np.pi * freq * t)
    if channels == 1:
        return amplitude * mono
    return np.stack([amplitude * (c + 1) * mono for c in range(channels)], axis=1)


def write_wav_file(path: str | Path, seconds: float, sr: int, freq: float = 220.0, channels: int = 1,
                   amplitude: float = 0.1, subtype: str = "PCM_16") -> Path:
    """Write a sine WAV (see :func:`tone`), creating parent folders; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, sr, freq, amplitude, channels), sr, subtype=subtype)
    return path


@pytest.fixture
def write_wav() -> Callable[..., Path]:
    """``write_wav(path, seconds, sr, freq=220.0, channels=1, amplitude=0.1, subtype='PCM_16')``."""
    return write_wav_file


def speech_like(seconds: float, sr: int = 16000, f0: float = 120.0) -> np.ndarray:
    """A crude voiced signal webrtcvad accepts: a sawtooth glottal source through three formant
    resonators, amplitude-modulated at a 4 Hz syllable rate; peak 0.5."""
    import scipy.signal as ss

    t = np.arange(int(round(seconds * sr))) / sr
    y = ss.sawtooth(2 * np.pi * f0 * t)
    for f, bw in ((700, 100), (1200, 120), (2600, 200)):
        r, th = np.exp(-np.pi * bw / sr), 2 * np.pi * f / sr
        y = ss.lfilter([1 - r], [1, -2 * r * np.cos(th), r * r], y)
    y = y / np.abs(y).max()
    env = 0.5 * (1 + np.sin(2 * np.pi * 4 * t - np.pi / 2))
    return (0.5 * y * env).astype(np.float32)


@pytest.fixture
def emodb_tree(tmp_path: Path) -> Path:
    """A tiny EmoDB root: ``wav/<spk><text><letter>a.wav`` for 3 speakers x 2 texts x 5 emotions
    (30 files), 1.2 s at 16 kHz each; every file is a distinct sine (frequency from its index)."""
    root = tmp_path / "emodb"
    i = 0
    for spk in EMODB_SPEAKERS:
        for text in EMODB_TEXTS:
            for letter in EMODB_LETTERS:
                write_wav_file(root / "wav" / f"{spk}{text}{letter}a.wav", EMODB_SECONDS, EMODB_SR,
                               freq=150.0 + 25.0 * i)
                i += 1
    return root


@pytest.fixture
def speech_signal() -> Callable[..., np.ndarray]:
    """``speech_signal(seconds, sr=16000, f0=120.0)``: see :func:`speech_like`."""
    return speech_like
