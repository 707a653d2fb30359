"""Synthetic speech-like audio for fixtures and benchmarks (the real corpora are not everywhere).

One generator shared by the tests and ``benchmarks/`` (through ``benchmarks/_common.py``) so that
both exercise the same VAD path; test-only code, not part of the package.
"""

from __future__ import annotations

import numpy as np


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
