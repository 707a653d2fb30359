"""DeepTalk network, checkpoint loading and encoder paths, checked against the spec's numbers
and against independent computations (numpy convolutions, per-window embedding)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy.signal import butter, lfilter

from deeptalk_ser.data.audio.framing import frame_signal
from deeptalk_ser.embedding.encoders.deeptalk import (CheckpointError, DeepTalkEncoder, DeepTalkNet, build_net,
                                            load_checkpoint, load_reference_checkpoint,
                                            reference_partial_starts)

SR = 8000

# --- the reference checkpoint layout, written out from docs/deeptalk.md section 2.3 -------------
FCNN_SHAPES = {0: (2, 1, 5, 1), 2: (4, 2, 5, 1), 4: (8, 4, 7, 1), 6: (16, 8, 9, 1), 8: (32, 16, 11, 1),
               11: (40, 32, 11, 1)}
GST_CHANNELS = [1, 32, 32, 64, 64, 128, 128]


def reference_model_state() -> dict[str, tuple[int, ...]]:
    """Every key and shape of a reference ``model_state`` (DeepTalk and its unused blocks)."""
    shapes: dict[str, tuple[int, ...]] = {"similarity_weight": (1,), "similarity_bias": (1,)}
    for i, w in FCNN_SHAPES.items():
        shapes[f"fCNN.{i}.weight"], shapes[f"fCNN.{i}.bias"] = w, (w[0],)
    for i in range(6):
        c_in, c_out = GST_CHANNELS[i], GST_CHANNELS[i + 1]
        shapes[f"gst.encoder.convs.{i}.weight"] = (c_out, c_in, 3, 3)
        shapes[f"gst.encoder.convs.{i}.bias"] = (c_out,)
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"gst.encoder.bns.{i}.{name}"] = (c_out,)
        shapes[f"gst.encoder.bns.{i}.num_batches_tracked"] = ()
    for name in ("weight_ih_l0", "weight_hh_l0"):
        shapes[f"gst.encoder.gru.{name}"] = (384, 128)
    for name in ("bias_ih_l0", "bias_hh_l0"):
        shapes[f"gst.encoder.gru.{name}"] = (384,)
    shapes["gst.stl.embed"] = (10, 32)
    shapes["gst.stl.attention.W_query.weight"] = (256, 128)
    shapes["gst.stl.attention.W_key.weight"] = (256, 32)
    shapes["gst.stl.attention.W_value.weight"] = (256, 32)
    return shapes


UNUSED_BLOCKS = {  # OneDCNN convs, a 3-layer LSTM of 128, the linear head
    "OneDCNN.1.weight": (16, 1, 3, 1), "OneDCNN.1.bias": (16,), "OneDCNN.3.weight": (32, 16, 3, 1),
    "OneDCNN.3.bias": (32,), "OneDCNN.5.weight": (64, 32, 7, 1), "OneDCNN.5.bias": (64,),
    "OneDCNN.8.weight": (128, 64, 9, 1), "OneDCNN.8.bias": (128,),
    **{f"lstm.{n}_l{layer}": s for layer in range(3)
       for n, s in (("weight_ih", (512, 128)), ("weight_hh", (512, 128)), ("bias_ih", (512,)), ("bias_hh", (512,)))},
    "linear.weight": (128, 128), "linear.bias": (128,),
}


def write_reference_checkpoint(path: Path, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    if state is None:
        state = {}
        for k, shape in {**reference_model_state(), **UNUSED_BLOCKS}.items():
            if k.endswith("num_batches_tracked"):
                state[k] = torch.tensor(630501)
            elif k.endswith("running_var"):
                state[k] = torch.rand(shape, generator=gen) + 0.5
            else:
                state[k] = 0.1 * torch.randn(shape, generator=gen)
    torch.save({"step": 630501, "model_state": state, "optimizer_state": {"state": {}, "param_groups": []}}, path)
    return state


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise-modulated harmonics with a gliding pitch: voiced-speech-like 8 kHz test audio."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    b, a = butter(2, 8 / (SR / 2))
    wav = np.zeros_like(t)
    for h in range(1, 25):
        envelope = 1 + 2 * lfilter(b, a, rng.standard_normal(len(t)))
        wav += envelope * np.sin(h * phase) / h
    wav += 0.02 * rng.standard_normal(len(t))
    return (0.1 * wav / np.abs(wav).max()).astype(np.float32)


@pytest.fixture(scope="module")
def encoder() -> DeepTalkEncoder:
    """A random-init encoder whose BatchNorm statistics are fitted to speech-like frames.

    With PyTorch's default init the GST shrinks its input so much that embeddings hardly depend
    on the audio (window-to-window differences ~1e-5), which would make any 1e-4 comparison
    vacuous; fitted BatchNorm statistics restore a realistic sensitivity (~1e-2 per frame shift).
    """
    torch.set_num_threads(2)
    enc = DeepTalkEncoder(device="cpu", checkpoint=None, batch_size=64)
    frames = frame_signal(speech_like(4.0, seed=9))[:396].reshape(4, 99, 160)
    for m in enc.net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batch
            m.reset_running_stats()
    enc.net.train()
    with torch.no_grad():
        enc.net(torch.from_numpy(frames))
    enc.net.eval()
    return enc


# --- network -------------------------------------------------------------------------------------

def test_parameter_counts() -> None:
    net = DeepTalkNet()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(net.fCNN) == 21_240
    assert count(net.gst) == 435_872
    embedding_path = [p for name, p in net.named_parameters() if not name.startswith("similarity_")]
    assert sum(p.numel() for p in embedding_path) == 457_112  # all but the GE2E scalars
    assert count(net) == 457_112 + 2


def test_state_dict_layout_is_the_reference() -> None:
    ours = {k: tuple(v.shape) for k, v in DeepTalkNet().state_dict().items()}
    assert ours == reference_model_state()
    fcnn = DeepTalkNet().fCNN
    assert [type(m).__name__ for m in fcnn] == ["Conv2d", "SELU"] * 5 + ["ZeroPad2d", "Conv2d", "SELU"]


def np_deepvox(frame: np.ndarray, net: DeepTalkNet) -> np.ndarray:
    """DeepVOX on one frame with explicit dilated correlations (valid), the pad and numpy SELU."""
    alpha, scale = 1.6732632423543772, 1.0507009873554805
    x = frame[None, :].astype(np.float64)  # (channels, samples)
    for layer in net.fCNN:
        if isinstance(layer, torch.nn.ZeroPad2d):
            x = np.pad(x, ((0, 0), (3, 4)))
        elif isinstance(layer, torch.nn.Conv2d):
            w = layer.weight.detach().numpy()[..., 0].astype(np.float64)  # (out, in, k)
            d = layer.dilation[0]
            k = w.shape[2]
            length = x.shape[1] - d * (k - 1)
            y = np.zeros((w.shape[0], length))
            for o in range(w.shape[0]):
                for j in range(k):
                    y[o] += w[o, :, j] @ x[:, j * d:j * d + length]
            x = y + layer.bias.detach().numpy()[:, None]
        else:
            x = scale * np.where(x > 0, x, alpha * (np.exp(x) - 1))
    assert x.shape == (40, 1)
    return x[:, 0]


def test_deepvox_matches_numpy_and_reference_layout() -> None:
    torch.manual_seed(0)
    net = DeepTalkNet().eval()
    frames = torch.randn(2, 7, 160)
    with torch.no_grad():
        ours = net.filterbank(frames)
        # the reference's own computation: (B, 1, 160, T) through the stock Sequential forward
        ref = torch.nn.Sequential.forward(net.fCNN, frames.unsqueeze(1).permute(0, 1, 3, 2))
    assert ours.shape == (2, 7, 40) and ref.shape == (2, 40, 1, 7)
    torch.testing.assert_close(ours, ref.squeeze(2).permute(0, 2, 1), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(ours[1, 3].numpy(), np_deepvox(frames[1, 3].numpy(), net), atol=1e-5)
    with pytest.raises(ValueError):
        net.filterbank(torch.zeros(3, 159))


def test_style_token_attention_matches_numpy() -> None:
    torch.manual_seed(1)
    stl = DeepTalkNet().gst.stl
    query = torch.randn(3, 128)
    with torch.no_grad():
        out = stl(query).numpy()
    tokens = np.tanh(stl.embed.detach().numpy())
    wq, wk, wv = (getattr(stl.attention, n).weight.detach().numpy() for n in ("W_query", "W_key", "W_value"))
    q, k, v = query.numpy() @ wq.T, tokens @ wk.T, tokens @ wv.T
    expected = np.zeros((3, 256))
    for h in range(8):
        cols = slice(32 * h, 32 * h + 32)
        scores = q[:, cols] @ k[:, cols].T / math.sqrt(32)
        att = np.exp(scores - scores.max(axis=1, keepdims=True))
        att /= att.sum(axis=1, keepdims=True)
        expected[:, cols] = att @ v[:, cols]
    np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("t", [1, 99, 200])
def test_forward_shapes_and_normalisation(t: int) -> None:
    torch.manual_seed(2)
    net = DeepTalkNet().eval()
    with torch.no_grad():
        emb = net(torch.randn(3, t, 160))
        feat = net.gst.encoder.convs[0](net.filterbank(torch.randn(1, t, 160)).unsqueeze(1))
    assert emb.shape == (3, 256)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    assert feat.shape[-2:] == ((t + 1) // 2, 20)


def test_random_init_is_seeded_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = build_net(), build_net()
    assert torch.rand(1) == before
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


# --- checkpoints ---------------------------------------------------------------------------------

def test_load_reference_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "model_GST.pt"
    state = write_reference_checkpoint(path)
    net = DeepTalkNet()
    assert load_reference_checkpoint(net, path) == 630501
    loaded = net.state_dict()
    for k in reference_model_state():
        assert torch.equal(loaded[k], state[k]), k
    assert "loaded reference" not in load_checkpoint(DeepTalkNet(), path)  # detection works too
    assert load_checkpoint(DeepTalkNet(), path) == "reference checkpoint (step 630501)"


@pytest.mark.parametrize("change, needle", [
    (lambda s: s.update({"gst.extra.weight": torch.zeros(3)}), "unexpected keys (1): gst.extra.weight"),
    (lambda s: s.pop("gst.stl.embed"), "missing keys (1): gst.stl.embed"),
    (lambda s: s.update({"fCNN.4.weight": torch.zeros(8, 4, 5, 1)}), "fCNN.4.weight: file (8, 4, 5, 1) vs model (8, 4, 7, 1)"),
])
def test_reference_checkpoint_errors_name_file_and_keys(tmp_path: Path, change, needle: str) -> None:
    path = tmp_path / "bad.pt"
    state = write_reference_checkpoint(path)
    change(state)
    write_reference_checkpoint(path, state)
    with pytest.raises(CheckpointError) as err:
        load_reference_checkpoint(DeepTalkNet(), path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_missing_batchnorm_counter_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    state = write_reference_checkpoint(path)
    write_reference_checkpoint(path, {k: v for k, v in state.items() if "num_batches_tracked" not in k})
    load_reference_checkpoint(DeepTalkNet(), path)


def test_own_formats_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(3)
    src = DeepTalkNet().eval()
    with torch.no_grad():
        src.similarity_weight.fill_(12.5)
    frames = torch.randn(2, 50, 160)
    with torch.no_grad():
        expected = src(frames)

    plain = tmp_path / "plain.pt"
    torch.save(src.state_dict(), plain)
    lightning = tmp_path / "last.ckpt"
    torch.save({"epoch": 3, "pytorch-lightning_version": "2.6.6",
                "state_dict": {**{f"model.{k}": v for k, v in src.state_dict().items()},
                               "loss.weight": torch.tensor([1.0])},
                "hyper_parameters": OmegaConf.create({"lr": 1e-4})}, lightning)
    for path, kind in ((plain, "state dict"), (lightning, "Lightning checkpoint")):
        dst = build_net(seed=99)
        assert load_checkpoint(dst, path) == kind
        with torch.no_grad():
            torch.testing.assert_close(dst.eval()(frames), expected)
        assert dst.similarity_weight.item() == 12.5

    broken = tmp_path / "broken.ckpt"
    torch.save({"state_dict": {"model.fCNN.0.weight": torch.zeros(2, 1, 5, 1)}}, broken)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(DeepTalkNet(), broken)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(DeepTalkNet(), tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(DeepTalkNet(), junk)


def test_encoder_loads_checkpoint_and_reports_it(tmp_path: Path) -> None:
    path = tmp_path / "model_GST.pt"
    write_reference_checkpoint(path)
    enc = DeepTalkEncoder(checkpoint=str(path))
    cfg = enc.config()
    assert cfg["checkpoint"]["file"] == "model_GST.pt" and len(cfg["checkpoint"]["sha256"]) == 64
    assert cfg["bf16"] is False
    assert cfg["frontend"]["sample_rate"] == 8000 and cfg["frontend"]["vad"]["enabled"]
    assert not enc.net.training


# --- encoder -------------------------------------------------------------------------------------

def test_random_init_is_logged_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        enc = DeepTalkEncoder()
    assert "NO CHECKPOINT" in caplog.text
    assert enc.config()["checkpoint"] == {"random_init_seed": 0}
    assert not enc.bf16  # CPU always runs fp32
    assert not DeepTalkEncoder(bf16=True).bf16


def test_frontend_must_be_8khz() -> None:
    with pytest.raises(ValueError, match="8000 Hz"):
        DeepTalkEncoder(frontend={"sample_rate": 16000})


def test_hydra_config() -> None:
    from hydra.utils import instantiate

    conf = Path(__file__).resolve().parents[1] / "conf" / "encoder" / "deeptalk.yaml"
    root = Path(__file__).resolve().parents[1]
    cfg = OmegaConf.create({"device": "cpu", "paths": {"root_dir": str(root)}, "encoder": OmegaConf.load(conf)})
    windowing = cfg.encoder.pop("windowing")
    assert windowing.window_s == 1.0 and windowing.hop_s == 0.01 and windowing.renormalize is False
    enc = instantiate(cfg.encoder)
    assert isinstance(enc, DeepTalkEncoder) and enc.batch_size == 256
    # the config's default is the checkpoint shipped in the package
    assert Path(enc.checkpoint).name == "deeptalk_speechocean762.pt" and Path(enc.checkpoint).is_file()
    assert enc.frontend.normalize_dbfs == -30 and enc.frontend.vad.dilation == 7


def test_fast_windowed_equals_reference(encoder: DeepTalkEncoder) -> None:
    wav = speech_like(2.0)
    fast = encoder.embed_windowed(wav, window=SR, hop=80, batch_size=64)
    ref = encoder.embed_windowed_reference(wav, window=SR, hop=80, batch_size=64)
    assert fast.shape == ref.shape == (1 + (len(wav) - SR) // 80, 256)
    assert np.abs(fast - ref).max() <= 1e-4
    # a one-frame misalignment would be caught: neighbouring windows differ by far more than 1e-4
    assert np.abs(fast[1:] - fast[:-1]).max(axis=1).min() > 1e-3


def test_fast_windowed_exact_with_dropped_frames(encoder: DeepTalkEncoder) -> None:
    wav = speech_like(2.5, seed=1)
    wav[6000:7700] = 0.0  # 1700 zero samples: whole frames inside are dropped in some windows
    wav[9100:17200] = 0.0  # 8100 zeros: exactly one window (start 9120) lies inside, no frame at all
    fast = encoder.embed_windowed(wav, window=SR, hop=160, batch_size=32)
    ref = encoder.embed_windowed_reference(wav, window=SR, hop=160, batch_size=32)
    assert np.array_equal(np.isnan(fast), np.isnan(ref))
    empty = np.flatnonzero(np.isnan(fast).all(axis=1))
    assert empty.tolist() == [57]  # window 57 = samples [9120, 17120): frames 114..212, all zero
    ok = ~np.isnan(fast).any(axis=1)
    assert ok.sum() == len(fast) - 1
    assert np.abs(fast[ok] - ref[ok]).max() <= 1e-4


def test_windowed_hop_off_the_frame_grid_falls_back(encoder: DeepTalkEncoder) -> None:
    wav = speech_like(1.3, seed=2)
    out = encoder.embed_windowed(wav, window=SR, hop=100)
    ref = encoder.embed_windowed_reference(wav, window=SR, hop=100)
    assert out.shape == (25, 256)
    np.testing.assert_array_equal(out, ref)
    assert encoder.embed_windowed(wav[:SR - 1], window=SR, hop=80).shape == (0, 256)


def test_embed_windows_uses_only_kept_frames(encoder: DeepTalkEncoder) -> None:
    """A window with dropped frames is embedded from exactly its remaining frames."""
    wav = speech_like(1.5, seed=3)
    windows = np.stack([wav[:SR], wav[2000:2000 + SR].copy(), wav[4000:4000 + SR]])
    windows[1, 1000:3000] = 0.0
    out = encoder.embed_windows(windows)
    for row in range(3):
        frames = frame_signal(windows[row])
        assert len(frames) == (99 if row != 1 else 99 - 23)
        with torch.no_grad():
            direct = encoder.net(torch.from_numpy(frames)[None]).numpy()[0]
        np.testing.assert_allclose(out[row], direct, atol=1e-5)


@pytest.mark.parametrize("n_samples, starts", [
    (15919, []), (15920, [0]), (23919, [0, 100]), (24000, [0, 100]), (40000, [0, 100, 200, 300]),
])
def test_reference_partial_grid(n_samples: int, starts: list[int]) -> None:
    # est = ceil((n+1)/80); partials every 100 frames while start + 200 <= est + 1
    assert reference_partial_starts(n_samples).tolist() == starts


def test_embed_utterance(encoder: DeepTalkEncoder) -> None:
    assert encoder.embed_utterance(speech_like(1.9)) is None  # < 200 frames
    wav = speech_like(3.0, seed=4)  # 24000 samples: partials [0, 200) and [100, 300)
    emb = encoder.embed_utterance(wav)
    padded = np.pad(wav, (0, 300 * 80 - len(wav)))  # the reference pads up to the last partial's end
    frames = frame_signal(padded)
    assert len(frames) == 299
    frames = np.concatenate((frames, frames[-1:]))  # and repeats the tail to reach 300 frames
    with torch.no_grad():
        parts = encoder.net(torch.from_numpy(np.stack([frames[:200], frames[100:300]]))).numpy()
    mean = parts.mean(axis=0)
    np.testing.assert_allclose(emb, mean / np.linalg.norm(mean), atol=1e-5)
    assert emb.shape == (256,) and emb.dtype == np.float32
    # the bare-network variant used by the training module's validation gives the same
    np.testing.assert_allclose(DeepTalkEncoder.embed_with_net(encoder.net, wav, batch_size=1), emb, atol=1e-5)
    assert DeepTalkEncoder.embed_with_net(encoder.net, wav[:15919]) is None
