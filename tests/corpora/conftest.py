"""Fixture helpers for the corpus-loader tests: tiny generated WAVs in the real layouts."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf

WriteWav = Callable[..., Path]


@pytest.fixture
def write_wav() -> WriteWav:
    """``write_wav(path, seconds=0.25, sr=16000)``: a short 16-bit sine, parents created.
    Different lengths let tests check that durations come from each file's header."""

    def write(path: Path, seconds: float = 0.25, sr: int = 16000) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(int(round(seconds * sr))) / sr
        sf.write(str(path), 0.1 * np.sin(2 * np.pi * 220.0 * t), sr, subtype="PCM_16")
        return path

    return write


@pytest.fixture
def write_file() -> Callable[[Path, str], Path]:
    """``write_file(path, text)``: a label/metadata file holding exactly ``text``, parents created."""

    def write(path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write
