"""The encoder's signal front end, every step explicit in config.

Order: resample to the encoder's rate (soxr) -> level normalisation to a dBFS target
(optionally increase-only, as both GE2E and DeepTalk references do) -> webrtcvad silence
removal (moving-average smoothing + binary dilation, the reference recipe).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import soxr
from scipy.ndimage import binary_dilation

INT16_MAX = 2**15 - 1


@dataclass
class VADConfig:
    """webrtcvad silence removal. ``dilation`` is the structuring element length in VAD windows."""

    enabled: bool = False
    aggressiveness: int = 3
    window_ms: int = 30
    smoothing: int = 8
    dilation: int = 7


def resample(wav: np.ndarray, sr_in: int, sr_out: int, quality: str = "HQ") -> np.ndarray:
    if sr_in == sr_out:
        return wav
    return soxr.resample(wav, sr_in, sr_out, quality=quality).astype(np.float32, copy=False)


def normalize_level(wav: np.ndarray, target_dbfs: float, increase_only: bool = True) -> np.ndarray:
    """Scale to an RMS of ``target_dbfs`` (re int16 full scale); silent input is returned as is."""
    rms = float(np.sqrt(np.mean((wav.astype(np.float64) * INT16_MAX) ** 2)))
    if rms == 0.0:
        return wav
    change_db = target_dbfs - 20 * np.log10(rms / INT16_MAX)
    if increase_only and change_db < 0:
        return wav
    return (wav * 10 ** (change_db / 20)).astype(np.float32)


def _moving_average(x: np.ndarray, width: int) -> np.ndarray:
    padded = np.concatenate((np.zeros((width - 1) // 2), x, np.zeros(width // 2)))
    c = np.cumsum(padded, dtype=float)
    c[width:] = c[width:] - c[:-width]
    return c[width - 1:] / width


def voiced_mask(wav: np.ndarray, sr: int, cfg: VADConfig) -> np.ndarray:
    """Per-sample boolean mask of voiced audio (length trimmed to whole VAD windows)."""
    import webrtcvad

    if sr not in (8000, 16000, 32000, 48000):
        raise ValueError(f"webrtcvad needs 8/16/32/48 kHz audio, got {sr} Hz")
    win = cfg.window_ms * sr // 1000
    n = len(wav) - len(wav) % win
    if n == 0:
        return np.zeros(0, dtype=bool)
    pcm = np.round(np.clip(wav[:n], -1, 1) * INT16_MAX).astype("<i2").tobytes()
    vad = webrtcvad.Vad(cfg.aggressiveness)
    flags = np.array([vad.is_speech(pcm[i * 2:(i + win) * 2], sr) for i in range(0, n, win)], dtype=float)
    mask = np.round(_moving_average(flags, cfg.smoothing)).astype(bool)
    mask = binary_dilation(mask, np.ones(cfg.dilation, dtype=bool))
    return np.repeat(mask, win)


@dataclass
class AudioFrontend:
    """Waveform at any rate -> conditioned waveform at the encoder's ``sample_rate``."""

    sample_rate: int = 16000
    resample_quality: str = "HQ"
    normalize_dbfs: float | None = None
    increase_only: bool = True
    vad: VADConfig = field(default_factory=VADConfig)

    def __post_init__(self) -> None:
        if isinstance(self.vad, dict):
            self.vad = VADConfig(**self.vad)
        elif not isinstance(self.vad, VADConfig):  # OmegaConf DictConfig
            self.vad = VADConfig(**dict(self.vad))

    def __call__(self, wav: np.ndarray, sr: int) -> np.ndarray:
        wav = resample(wav, sr, self.sample_rate, self.resample_quality)
        if self.normalize_dbfs is not None:
            wav = normalize_level(wav, self.normalize_dbfs, self.increase_only)
        if self.vad.enabled:
            mask = voiced_mask(wav, self.sample_rate, self.vad)
            wav = wav[: len(mask)][mask]
        return np.ascontiguousarray(wav, dtype=np.float32)

    def describe(self) -> dict:
        return {"sample_rate": self.sample_rate, "resample_quality": self.resample_quality,
                "normalize_dbfs": self.normalize_dbfs, "increase_only": self.increase_only,
                "vad": vars(self.vad)}
