"""``encoder.output``: DeepTalk's inner outputs as features. Shapes, what each one is, its own
store key, and the default ``embedding`` bit for bit what the encoder gave before the option
existed (tests/data/deeptalk_embedding_reference.npz, written by the earlier encoder on this audio)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deeptalk_ser.data.audio.framing import frame_mask
from deeptalk_ser.embedding.encoders.deeptalk import OUTPUT_DIMS, DeepTalkEncoder
from deeptalk_ser.utils.errors import ConfigError
from synthetic_audio import speech_like

REFERENCE = Path(__file__).parent / "data" / "deeptalk_embedding_reference.npz"


@pytest.fixture(scope="module")
def wav() -> np.ndarray:
    return speech_like(2.5, sr=8000)


def test_embedding_is_unchanged_bit_for_bit(wav: np.ndarray) -> None:
    ref = np.load(REFERENCE)
    enc = DeepTalkEncoder(device="cpu")
    assert np.array_equal(enc.embed_windowed(wav, 8000, 80), ref["windowed"])
    assert np.array_equal(enc.embed_utterance(wav), ref["utterance"])
    assert "output" not in enc.config()  # the embedding's store key is the one its stores were written under


@pytest.mark.parametrize("output", ["filterbank_stats", "gst_query", "gst_attention"])
def test_inner_outputs_shapes_and_store_key(wav: np.ndarray, output: str) -> None:
    enc = DeepTalkEncoder(device="cpu", output=output)
    X = enc.embed_windowed(wav, 8000, 80)
    assert X.shape == (151, OUTPUT_DIMS[output]) == (151, enc.embedding_dim) and np.isfinite(X).all()
    assert enc.embed_utterance(wav).shape == (OUTPUT_DIMS[output],)
    assert enc.config()["output"] == output and enc.name == f"deeptalk_{output}"
    if output == "gst_attention":  # a softmax over the 10 tokens for each of the 8 heads
        np.testing.assert_allclose(X.reshape(-1, 8, 10).sum(axis=2), 1.0, rtol=1e-5)


def test_filterbank_stats_are_the_channel_mean_and_std(wav: np.ndarray) -> None:
    enc = DeepTalkEncoder(device="cpu", output="filterbank_stats")
    z, keep, _ = frame_mask(np.asarray(wav[:8000], np.float32))
    with torch.no_grad():
        fb = enc.net.filterbank(torch.as_tensor(z[keep])).numpy()
    got = enc.embed_windowed(wav[:8000], 8000, 80)[0]
    np.testing.assert_allclose(got, np.concatenate([fb.mean(0), fb.std(0)]), rtol=1e-4, atol=1e-5)


def test_unknown_output_names_the_key() -> None:
    with pytest.raises(ConfigError, match="encoder.output"):
        DeepTalkEncoder(device="cpu", output="tokens")
