"""Windows defined in seconds at the encoder's own rate (the paper: 1 s windows, 10 ms hop).

The paper's code cut 22,000-sample windows with a 220-sample hop from 16 kHz audio fed to an
8 kHz model; we define windows in seconds and convert at the encoder's rate instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from deeptalk_ser.utils.errors import ConfigError


@dataclass(frozen=True)
class Windowing:
    """``window_s=None`` selects the encoder's own utterance-level embedding."""

    window_s: float | None = 1.0
    hop_s: float = 0.01
    renormalize: bool = False

    def samples(self, sample_rate: int) -> tuple[int, int]:
        if self.window_s is None:
            raise ConfigError("encoder.windowing", "utterance-level windowing has no window length")
        win, hop = round(self.window_s * sample_rate), round(self.hop_s * sample_rate)
        if win <= 0 or hop <= 0:
            raise ConfigError("encoder.windowing", f"window ({self.window_s}s) and hop ({self.hop_s}s) must be positive")
        return win, hop

    def n_windows(self, n_samples: int, sample_rate: int) -> int:
        win, hop = self.samples(sample_rate)
        return 0 if n_samples < win else 1 + (n_samples - win) // hop

    def describe(self) -> dict:
        if self.window_s is None:  # the encoder's own utterance embedding: hop/renormalize unused
            return {"window_s": None}
        return {"window_s": self.window_s, "hop_s": self.hop_s, "renormalize": self.renormalize}


def average_windows(window_embeddings: np.ndarray, renormalize: bool) -> np.ndarray:
    """Mean of window embeddings; optionally L2-normalised (the paper's code does not)."""
    mean = window_embeddings.mean(axis=0)
    if renormalize:
        norm = np.linalg.norm(mean)
        if norm > 0:
            mean = mean / norm
    return mean.astype(np.float32)


def describe_windowing(w: dict[str, Any] | str | None) -> str:
    """Short label for tables: the encoder's own utterance embedding, or window/hop (a fused
    store's key already holds its parts' labels as a string)."""
    if isinstance(w, str):
        return w
    if not w:
        return "precomputed"
    if w.get("window_s") is None:
        return "utterance"
    return f"{w['window_s']}s/{w['hop_s']}s" + ("+renorm" if w.get("renormalize") else "")
