"""DeepTalk framing against an independent per-frame loop (scipy's zscore, numpy's hamming)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from deeptalk_ser.data.audio.framing import (FrameCounts, frame_mask, frame_signal, frame_windows, n_frames,
                                        random_crop, windowed_frames)


def loop_frames(wav: np.ndarray) -> list[np.ndarray]:
    """The reference recipe written out frame by frame: window, drop all-zero, zscore, drop non-finite."""
    win = np.hamming(160)
    out = []
    start = 0
    while start + 160 <= len(wav):
        frame = wav[start:start + 160].astype(np.float64) * win
        start += 80
        if not frame.any():
            continue
        with np.errstate(all="ignore"):
            z = stats.zscore(frame, ddof=1)
        if np.all(np.isfinite(z)):
            out.append(z)
    return out


@pytest.mark.parametrize("n, expected", [(0, 0), (159, 0), (160, 1), (239, 1), (240, 2), (8000, 99), (16080, 200)])
def test_n_frames(n: int, expected: int) -> None:
    assert n_frames(n) == expected
    assert len(windowed_frames(np.ones(n, np.float32))) == expected


def test_matches_independent_loop() -> None:
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(1234)).astype(np.float32)
    frames = frame_signal(wav)
    ref = np.stack(loop_frames(wav))
    assert frames.dtype == np.float32 and frames.shape == ref.shape == (14, 160)
    np.testing.assert_allclose(frames, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(frames.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(frames.std(axis=1, ddof=1), 1, atol=1e-5)


def test_window_is_applied_before_zscore() -> None:
    """A constant signal only varies through the window: every frame is zscore(hamming)."""
    frames = frame_signal(np.full(800, 0.5, np.float32))
    expected = stats.zscore(np.hamming(160), ddof=1)
    assert frames.shape == (9, 160)
    np.testing.assert_allclose(frames, np.broadcast_to(expected, frames.shape), atol=1e-6)


def test_zero_and_nonfinite_frames_are_dropped_and_counted() -> None:
    rng = np.random.default_rng(1)
    wav = (0.1 * rng.standard_normal(4000)).astype(np.float32)
    wav[800:1600] = 0.0  # frames fully inside [800, 1600): starts 800..1440 -> 9 frames
    wav[3000] = np.nan  # frames containing sample 3000: starts 2880 and 2960 -> 2 frames
    frames, counts = frame_signal(wav, return_counts=True)
    assert counts == FrameCounts(total=49, zero=9, nonfinite=2)
    assert counts.kept == len(frames) == 38
    np.testing.assert_allclose(frames, np.stack(loop_frames(wav)), atol=1e-5)
    z, keep, _ = frame_mask(wav)
    assert np.flatnonzero(~keep).tolist() == list(range(10, 19)) + [36, 37]


def test_frame_windows_equals_per_row_framing() -> None:
    rng = np.random.default_rng(2)
    windows = (0.1 * rng.standard_normal((3, 1000))).astype(np.float32)
    windows[1, 100:700] = 0.0
    z, keep = frame_windows(windows)
    assert z.shape == (3, 11, 160) and keep.shape == (3, 11)
    for row in range(3):
        z_row, keep_row, _ = frame_mask(windows[row])
        np.testing.assert_array_equal(keep[row], keep_row)
        np.testing.assert_array_equal(z[row][keep[row]], z_row[keep_row])
    assert keep[1].sum() < 11 and keep[0].all()


def test_random_crop_tiles_short_utterances() -> None:
    rng = np.random.default_rng(3)
    frames = np.arange(50, dtype=np.float32)[:, None] * np.ones((1, 160), np.float32)
    crop, start = random_crop(frames, 200, rng)
    assert crop.shape == (200, 160)
    # tiled ceil(200/50)+1 = 5 times -> 250 frames, start in [0, 50)
    assert 0 <= start < 50
    np.testing.assert_array_equal(crop[:, 0], (np.arange(start, start + 200) % 50).astype(np.float32))
    exact, s = random_crop(frames[:40], 40, rng)
    assert s == 0 and len(exact) == 40
    with pytest.raises(ValueError):
        random_crop(frames[:0], 10, rng)
