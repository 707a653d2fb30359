"""Windows in seconds at the encoder's rate, and the window average."""

from __future__ import annotations

import numpy as np
import pytest

from deeptalk_ser.embedding.windowing import Windowing, average_windows

PAPER = Windowing(window_s=1.0, hop_s=0.01)


@pytest.mark.parametrize("sr,win,hop", [(8000, 8000, 80), (16000, 16000, 160)])
def test_samples_at_rate(sr, win, hop):
    assert PAPER.samples(sr) == (win, hop)


@pytest.mark.parametrize(
    "sr,n_samples,expected",
    [
        (16000, 16000, 1),          # exactly one window
        (16000, 16159, 1),          # one sample short of the second hop
        (16000, 16160, 2),
        (16000, 48000, 201),        # 3 s: 1 + 32000 / 160
        (8000, 8000, 1),
        (8000, 8079, 1),
        (8000, 8080, 2),
        (8000, 24000, 201),         # 3 s: 1 + 16000 / 80
        (8000, 12345, 55),          # 1 + floor(4345 / 80) = 1 + 54
    ],
)
def test_n_windows(sr, n_samples, expected):
    assert PAPER.n_windows(n_samples, sr) == expected


@pytest.mark.parametrize("sr,n_samples", [(16000, 15999), (8000, 7999), (16000, 0)])
def test_shorter_than_one_window_gives_zero(sr, n_samples):
    assert PAPER.n_windows(n_samples, sr) == 0


def test_invalid_windowing():
    with pytest.raises(ValueError):
        Windowing(window_s=None).samples(16000)
    with pytest.raises(ValueError):
        Windowing(window_s=1.0, hop_s=0.00001).samples(16000)  # hop rounds to 0 samples


def test_average_windows_plain_mean():
    w = np.array([[3.0, 0.0], [3.0, 8.0]])
    out = average_windows(w, renormalize=False)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [3.0, 4.0])


def test_average_windows_renormalize():
    w = np.array([[3.0, 0.0], [3.0, 8.0]])
    np.testing.assert_allclose(average_windows(w, renormalize=True), [0.6, 0.8], rtol=1e-6)


def test_average_windows_renormalize_zero_mean_stays_zero():
    w = np.array([[1.0, -2.0], [-1.0, 2.0]])
    np.testing.assert_array_equal(average_windows(w, renormalize=True), [0.0, 0.0])


def test_describe():
    assert Windowing(0.5, 0.02, True).describe() == {"window_s": 0.5, "hop_s": 0.02, "renormalize": True}
