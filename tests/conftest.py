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


from synthetic_audio import speech_like  # noqa: E402,F401  (fixtures import it from here)


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
