"""DeepTalk's raw-waveform framing: what the encoder sees after the front end.

The reference (DeepTalk ``utils/sigproc.py``, used by its preprocessing and inference) cuts the
8 kHz signal into 160-sample frames every 80 samples (100 frames/s), multiplies every frame by a
symmetric 160-point Hamming window (``numpy.hamming``), drops frames that carry no signal,
z-scores every frame over its own 160 samples (``ddof=1``) and drops frames whose z-score is not
finite. Frames are taken without padding: ``1 + (n - 160) // 80`` frames from ``n`` samples.

The window is applied *before* the z-score, as in the reference, so a frame's statistics are
those of the windowed frame. Frame ``j`` always covers samples ``[80 j, 80 j + 160)``, which is
what lets an encoder share per-frame work between overlapping windows (see
``encoders/deeptalk.py``): every step here is a function of one frame alone.

Zero rule: the spec drops *all-zero* frames; the reference code tests ``frame.sum() == 0`` on the
windowed frame. The two differ only for a frame that is not all zero but whose windowed samples
sum to exactly 0.0, which needs exact floating-point cancellation; we follow the spec. An
all-zero frame would be dropped by the finiteness rule anyway (0/0), so the zero rule matters for
the counts only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 8000
FRAME_LENGTH = 160  # 20 ms at 8 kHz
FRAME_HOP = 80  # 10 ms at 8 kHz
#: The reference's analysis window: numpy's symmetric Hamming (ends at 0.08, not 0).
HAMMING = np.hamming(FRAME_LENGTH)


@dataclass(frozen=True)
class FrameCounts:
    """How many frames an utterance gave and why some were dropped (for logs and stores)."""

    total: int
    zero: int
    nonfinite: int

    @property
    def kept(self) -> int:
        return self.total - self.zero - self.nonfinite


def n_frames(n_samples: int) -> int:
    """Number of whole frames in ``n_samples`` samples (no padding, as the reference)."""
    return 0 if n_samples < FRAME_LENGTH else 1 + (n_samples - FRAME_LENGTH) // FRAME_HOP


def windowed_frames(wav: np.ndarray) -> np.ndarray:
    """(n_samples,) -> (T, 160) float64 Hamming-windowed frames, every frame kept."""
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise ValueError(f"expected a 1-D waveform, got shape {wav.shape}")
    t = n_frames(len(wav))
    if t == 0:
        return np.zeros((0, FRAME_LENGTH), np.float64)
    view = np.lib.stride_tricks.sliding_window_view(wav, FRAME_LENGTH)[::FRAME_HOP][:t]
    return view * HAMMING  # float64, as the reference (float32 audio times a float64 window)


def normalize_frames(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z-score every frame over its own samples (ddof=1); flag the frames the reference drops.

    Works on any leading shape ``(..., 160)``. Returns ``(z, zero, nonfinite)``: ``z`` float32
    z-scores (garbage where dropped), and two boolean masks of shape ``frames.shape[:-1]``;
    a frame is kept iff neither mask is set. ``nonfinite`` is only set on non-zero frames.
    """
    zero = ~frames.any(axis=-1)
    mean = frames.mean(axis=-1, keepdims=True)
    std = frames.std(axis=-1, ddof=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = (frames - mean) / std
    nonfinite = ~np.isfinite(z).all(axis=-1) & ~zero
    return z.astype(np.float32), zero, nonfinite


def frame_mask(wav: np.ndarray) -> tuple[np.ndarray, np.ndarray, FrameCounts]:
    """All frames of ``wav`` z-scored, plus the keep mask: ``(z (T,160) float32, keep (T,), counts)``.

    The unfiltered form is what an exact windowed fast path needs: the frames of a window that
    starts at frame ``s`` are ``z[s:s + F][keep[s:s + F]]``.
    """
    z, zero, nonfinite = normalize_frames(windowed_frames(wav))
    counts = FrameCounts(total=len(z), zero=int(zero.sum()), nonfinite=int(nonfinite.sum()))
    return z, ~(zero | nonfinite), counts


def frame_signal(wav: np.ndarray, return_counts: bool = False
                 ) -> np.ndarray | tuple[np.ndarray, FrameCounts]:
    """The DeepTalk encoder input of one utterance: (T, 160) float32 z-scored frames.

    Dropped frames are removed, so ``T <= n_frames(len(wav))``.
    """
    z, keep, counts = frame_mask(wav)
    frames = np.ascontiguousarray(z[keep])
    return (frames, counts) if return_counts else frames


def frame_windows(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame a batch of equal-length windows at once: (B, n) -> (z (B, F, 160), keep (B, F)).

    Equal to calling :func:`frame_mask` on every row (each frame is processed on its own).
    """
    windows = np.asarray(windows)
    if windows.ndim != 2:
        raise ValueError(f"expected (batch, samples) windows, got shape {windows.shape}")
    b, f = windows.shape[0], n_frames(windows.shape[1])
    if f == 0:
        return np.zeros((b, 0, FRAME_LENGTH), np.float32), np.zeros((b, 0), bool)
    view = np.lib.stride_tricks.sliding_window_view(windows, FRAME_LENGTH, axis=1)[:, ::FRAME_HOP][:, :f]
    z, zero, nonfinite = normalize_frames(view * HAMMING)
    return z, ~(zero | nonfinite)


def random_crop(frames: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A training crop of ``n`` frames, as the reference's ``random_partial``.

    Utterances shorter than ``n`` are tiled ``ceil(n / T) + 1`` times first; the start is drawn
    from ``[0, T' - n)`` (the reference never picks the very last start unless ``T' == n``).
    Returns ``(crop, start)``.
    """
    if len(frames) == 0:
        raise ValueError("cannot crop an utterance with no frames")
    if len(frames) < n:
        frames = np.tile(frames, (int(np.ceil(n / len(frames))) + 1, 1))
    start = 0 if len(frames) == n else int(rng.integers(0, len(frames) - n))
    return frames[start:start + n], start
