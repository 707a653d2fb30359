"""On-the-fly augmentation of training crops, in the sample domain before framing.

Speed perturbation (Kaldi / WeSpeaker style: resampling, so tempo and pitch move together),
additive noise at a random SNR, and gain. Noise is generated (white, pink, brown; no corpus
needed) or read as random segments of the audio files under ``noise_dir`` (opened per crop,
never held in memory). Every draw comes from the crop's own generator, so a crop stays a pure
function of ``(utterance, crop seed)`` and resume is exact.

Gain note: DeepTalk z-scores every 20 ms frame, which removes a gain almost exactly; gain is
offered for completeness (it changes frames only through the relative level of added noise
when applied after it, which we do not do) and is off in every shipped recipe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
from scipy.fft import next_fast_len
from scipy.signal import resample_poly

from deeptalk_ser.utils.errors import ConfigError, DataError

NOISE_COLOURS = ("white", "pink", "brown")
NOISE_SUFFIXES = (".wav", ".flac", ".ogg")


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of unit-power noise with a 1/f^0 (white), 1/f (pink) or 1/f^2 (brown) spectrum."""
    if colour not in NOISE_COLOURS:
        raise ValueError(f"unknown noise colour {colour!r}; use one of {NOISE_COLOURS}")
    if colour == "white":
        noise = rng.standard_normal(n)
    else:  # shape a white spectrum; an FFT-friendly length (a crop's length can have large prime factors)
        m = next_fast_len(n, real=True)
        spec = np.fft.rfft(rng.standard_normal(m))
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        spec /= f ** (0.5 if colour == "pink" else 1.0)
        spec[0] = 0.0
        noise = np.fft.irfft(spec, m)[:n]
    return noise / max(float(np.sqrt(np.mean(noise ** 2))), 1e-12)


def add_noise(wav: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``wav + a * noise`` with ``a`` chosen so that power(wav) / power(a * noise) = snr_db."""
    p_sig = float(np.mean(wav.astype(np.float64) ** 2))
    p_noise = float(np.mean(noise.astype(np.float64) ** 2))
    if p_sig <= 0 or p_noise <= 0:
        return wav
    a = math.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10)))
    return (wav + a * noise).astype(np.float32)


def speed_perturb(wav: np.ndarray, factor: float) -> np.ndarray:
    """Play ``wav`` ``factor`` times faster by polyphase resampling (length / factor)."""
    if factor == 1.0:
        return wav
    ratio = Fraction(factor).limit_denominator(100)
    return resample_poly(wav, ratio.denominator, ratio.numerator).astype(np.float32)


def list_noise_files(noise_dir: str | Path) -> list[Path]:
    root = Path(noise_dir)
    if not root.is_dir():
        raise ConfigError("training.augment.noise_dir", f"{noise_dir} is not a directory")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in NOISE_SUFFIXES)
    if not files:
        raise ConfigError("training.augment.noise_dir", f"no {'/'.join(NOISE_SUFFIXES)} files under {noise_dir}")
    return files


def read_noise_segment(path: Path, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``n``-sample mono segment of ``path`` at ``sample_rate`` (tiled if shorter)."""
    try:
        info = sf.info(str(path))
        need = int(math.ceil(n * info.samplerate / sample_rate)) + 1
        start = int(rng.integers(0, max(1, info.frames - need)))
        seg, sr = sf.read(str(path), start=start, frames=need, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise DataError(path, f"unreadable noise file ({exc})") from exc
    seg = seg.mean(axis=1)
    if len(seg) == 0:
        raise DataError(path, "noise file has no samples")
    if sr != sample_rate:
        g = math.gcd(int(sr), int(sample_rate))
        seg = resample_poly(seg, sample_rate // g, int(sr) // g)
    if len(seg) < n:
        seg = np.tile(seg, int(math.ceil(n / len(seg))))
    return seg[:n]


@dataclass
class CropAugment:
    """Probabilities and ranges of each perturbation (``training.augment`` in ``conf/train.yaml``).

    ``speeds`` are drawn uniformly from the list when ``speed_prob`` fires (Kaldi's 0.9 / 1.1);
    the speaker label is kept (WeSpeaker's alternative, new speaker ids per speed, is not done).
    """

    noise_prob: float = 0.0
    snr_db: tuple[float, float] = (5.0, 20.0)
    noise_colours: Sequence[str] = ("white", "pink", "brown")
    noise_dir: str | None = None
    speed_prob: float = 0.0
    speeds: Sequence[float] = (0.9, 1.1)
    gain_prob: float = 0.0
    gain_db: tuple[float, float] = (-6.0, 6.0)
    sample_rate: int = 8000
    _noise_files: list[Path] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for key in ("noise_prob", "speed_prob", "gain_prob"):
            if not 0.0 <= float(getattr(self, key)) <= 1.0:
                raise ConfigError(f"training.augment.{key}", f"{getattr(self, key)} is not a probability in [0, 1]")
        if any(float(s) <= 0 for s in self.speeds) or (self.speed_prob and not self.speeds):
            raise ConfigError("training.augment.speeds", f"{list(self.speeds)}: positive factors needed")
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            raise ConfigError("training.augment.snr_db", f"{list(self.snr_db)}: expected [low, high]")
        for c in self.noise_colours:
            if c not in NOISE_COLOURS:
                raise ConfigError("training.augment.noise_colours", f"unknown colour {c!r}; use {NOISE_COLOURS}")
        if self.noise_dir:
            self._noise_files = list_noise_files(self.noise_dir)

    @property
    def active(self) -> bool:
        return bool(self.noise_prob or self.speed_prob or self.gain_prob)

    def draw_speed(self, rng: np.random.Generator) -> float:
        """The speed factor of one crop (1.0 when speed perturbation does not fire)."""
        if self.speed_prob and rng.random() < self.speed_prob:
            return float(self.speeds[int(rng.integers(0, len(self.speeds)))])
        return 1.0

    def noise(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self._noise_files:
            path = self._noise_files[int(rng.integers(0, len(self._noise_files)))]
            return read_noise_segment(path, n, self.sample_rate, rng)
        return coloured_noise(n, self.noise_colours[int(rng.integers(0, len(self.noise_colours)))], rng)

    def perturb(self, wav: np.ndarray, speed: float, rng: np.random.Generator) -> np.ndarray:
        """Speed (already drawn), then gain, then noise at a random SNR."""
        wav = speed_perturb(np.asarray(wav, np.float32), speed)
        if self.gain_prob and rng.random() < self.gain_prob:
            wav = (wav * 10 ** (rng.uniform(*self.gain_db) / 20)).astype(np.float32)
        if self.noise_prob and rng.random() < self.noise_prob:
            wav = add_noise(wav, self.noise(len(wav), rng), float(rng.uniform(*self.snr_db)))
        return wav
