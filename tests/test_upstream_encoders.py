"""encoder=onnx_speaker and encoder=ssl on tiny models built and saved here: the same numbers as
the source network / a direct transformers call, the Kaldi filterbank against an independent
reference, model files that cannot run code, store keys, and a layer sweep read from one store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.embedding.encoders.fbank import KaldiFbank
from deeptalk_ser.embedding.encoders.onnx_speaker import OnnxSpeakerEncoder
from deeptalk_ser.embedding.encoders.ssl import SSLEncoder
from deeptalk_ser.embedding.layers import LayerView, extract_or_reuse_layer
from deeptalk_ser.embedding.store import store_key
from deeptalk_ser.embedding.windowing import Windowing
from deeptalk_ser.utils.errors import ConfigError, DataError
from upstream_models import TinySpeakerNet, export_tiny_onnx, save_tiny_ssl

SR = 16000


def signal(seconds: float = 1.3, seed: int = 0) -> np.ndarray:
    """A known signal: two tones, a chirp and a little noise (every mel bin gets energy)."""
    t = np.arange(round(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * (200 + 2500 * t) * t)
    return (x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


# ----------------------------------------------------------------------------- filterbank


def kaldi_fbank_reference(x: np.ndarray, sr: int, fb: KaldiFbank) -> np.ndarray:
    """Kaldi's compute-fbank-feats written out from its definition (feature-window.cc, mel-computations.cc)
    in float64: frames, DC removal, pre-emphasis, window, power spectrum, triangular mel banks, log."""
    length, shift = round(sr * fb.frame_length_ms / 1000), round(sr * fb.frame_shift_ms / 1000)
    n_fft = 1 << (length - 1).bit_length()
    x = x.astype(np.float64) * fb.scale
    frames = np.stack([x[i * shift:i * shift + length] for i in range(1 + (len(x) - length) // shift)])
    frames = frames - frames.mean(axis=1, keepdims=True)
    pre = frames.copy()
    pre[:, 1:] -= fb.preemphasis * frames[:, :-1]
    pre[:, 0] -= fb.preemphasis * frames[:, 0]
    i = np.arange(length)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * i / (length - 1))
    window = {"hamming": 0.54 - 0.46 * np.cos(2 * np.pi * i / (length - 1)), "povey": hann ** 0.85}[fb.window_type]
    power = np.abs(np.fft.rfft(pre * window, n_fft)) ** 2
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)  # noqa: E731
    high = fb.high_freq if fb.high_freq > 0 else sr / 2 + fb.high_freq
    lo, hi = mel(fb.low_freq), mel(high)
    delta = (hi - lo) / (fb.num_mel_bins + 1)
    bins = mel(np.arange(n_fft // 2) * sr / n_fft)
    banks = np.zeros((fb.num_mel_bins, n_fft // 2))
    for b in range(fb.num_mel_bins):
        left, centre, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        up, down = (bins - left) / (centre - left), (right - bins) / (right - centre)
        banks[b] = np.where((bins > left) & (bins < right), np.where(bins <= centre, up, down), 0.0)
    feats = np.log(np.maximum(power[:, :n_fft // 2] @ banks.T, np.finfo(np.float32).eps))
    return feats - feats.mean(axis=0, keepdims=True) if fb.cmn else feats


@pytest.mark.parametrize("fb", [KaldiFbank(cmn=False), KaldiFbank(), KaldiFbank(window_type="povey", scale=1.0,
                                                                                    num_mel_bins=40)])
def test_fbank_matches_kaldi_reference(fb: KaldiFbank) -> None:
    x = signal()
    ours = fb(x, SR)
    ref = kaldi_fbank_reference(x, SR, fb)
    assert ours.shape == ref.shape == (1 + (len(x) - 400) // 160, fb.num_mel_bins)
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_fbank_defaults_are_wespeakers_and_dither_is_off() -> None:
    fb = KaldiFbank()
    assert (fb.num_mel_bins, fb.frame_length_ms, fb.frame_shift_ms, fb.dither, fb.window_type, fb.scale, fb.cmn) == \
        (80, 25.0, 10.0, 0.0, "hamming", 32768.0, True)
    x = signal()
    np.testing.assert_array_equal(fb(x, SR), fb(x, SR))  # no dither: identical twice
    assert fb(x[:399], SR).shape == (0, 80)
    with pytest.raises(ConfigError, match="window_type"):
        KaldiFbank(window_type="kaiser")


# ----------------------------------------------------------------------------- ONNX


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    return export_tiny_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def test_onnx_gives_the_module_embeddings(tiny_onnx) -> None:
    path, net = tiny_onnx
    enc = OnnxSpeakerEncoder(model=str(path))
    assert (enc.input_name, enc.output_name, enc.embedding_dim) == ("feats", "embs", 16)
    x = signal()
    with torch.no_grad():
        want = net(torch.from_numpy(KaldiFbank()(x, SR))[None]).numpy()[0]
    np.testing.assert_allclose(enc.embed_utterance(x), want, rtol=1e-4, atol=1e-5)
    windows = np.stack([x[:SR], x[3000:3000 + SR]])
    with torch.no_grad():
        want_w = net(torch.from_numpy(np.stack([KaldiFbank()(w, SR) for w in windows]))).numpy()
    np.testing.assert_allclose(enc.embed_windows(windows), want_w, rtol=1e-4, atol=1e-5)
    assert enc.embed_utterance(x[:800]) is None  # fewer than min_frames


def test_onnx_store_key_holds_checksum_and_features(tiny_onnx, tmp_path: Path) -> None:
    path, _ = tiny_onnx
    key = store_key(OnnxSpeakerEncoder(model=str(path)), Windowing(window_s=None))
    other = tmp_path / "tiny.onnx"
    export_tiny_onnx(other, TinySpeakerNet(dim=8))  # another network under the same name
    assert store_key(OnnxSpeakerEncoder(model=str(other)), Windowing(window_s=None)) != key
    cam = store_key(OnnxSpeakerEncoder(model=str(path), fbank={"window_type": "povey", "scale": 1.0}),
                    Windowing(window_s=None))
    assert cam != key and cam["encoder"]["fbank"]["window_type"] == "povey"


def test_onnx_missing_file_and_unknown_output_are_named(tiny_onnx, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="encoder.model"):
        OnnxSpeakerEncoder(model=None)
    with pytest.raises(DataError, match="not found"):
        OnnxSpeakerEncoder(model=str(tmp_path / "nope.onnx"))
    with pytest.raises(ConfigError, match="encoder.output"):
        OnnxSpeakerEncoder(model=str(tiny_onnx[0]), output="scores")
    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    with pytest.raises(DataError, match="onnxruntime cannot load"):
        OnnxSpeakerEncoder(model=str(tmp_path / "junk.onnx"))


# ----------------------------------------------------------------------------- SSL


@pytest.fixture(scope="module")
def wavlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_ssl(tmp_path_factory.mktemp("ssl") / "wavlm")


def direct_hidden(folder: Path, inputs: list[np.ndarray]) -> tuple:
    """hidden_states of a plain transformers call on the feature extractor's output."""
    from transformers import AutoFeatureExtractor, AutoModel

    fe = AutoFeatureExtractor.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    values = fe(inputs, sampling_rate=SR, return_tensors="pt").input_values
    with torch.no_grad():
        return model(values, output_hidden_states=True).hidden_states


@pytest.mark.parametrize("kind", ["wavlm", "hubert"])
def test_ssl_each_layer_is_the_direct_transformers_pooling(kind: str, tmp_path: Path, wavlm: Path) -> None:
    folder = wavlm if kind == "wavlm" else save_tiny_ssl(tmp_path / kind, kind)
    x = signal()
    hidden = direct_hidden(folder, [x])
    assert len(hidden) == 3
    for k, h in enumerate(hidden):
        h = h[0].double()
        enc = SSLEncoder(model=str(folder), layer=k)
        np.testing.assert_allclose(enc.embed_utterance(x), h.mean(0).numpy(), rtol=1e-4, atol=1e-5)
        both = SSLEncoder(model=str(folder), layer=k, pooling="mean+std").embed_utterance(x)
        np.testing.assert_allclose(both, torch.cat([h.mean(0), h.std(0, unbiased=False)]).numpy(), rtol=1e-4, atol=1e-5)
    every = SSLEncoder(model=str(folder), layer="all")
    want = np.concatenate([h[0].double().mean(0).numpy() for h in hidden])
    np.testing.assert_allclose(every.embed_utterance(x), want, rtol=1e-4, atol=1e-5)
    assert every.embedding_dim == 3 * 32


def test_ssl_windows_and_chunks(wavlm: Path) -> None:
    x = signal(2.0)
    windows = np.stack([x[:SR], x[SR // 2:SR // 2 + SR]])
    hidden = direct_hidden(wavlm, list(windows))
    enc = SSLEncoder(model=str(wavlm), layer=2, batch_size=1)
    np.testing.assert_allclose(enc.embed_windows(windows), hidden[2].double().mean(1).numpy(), rtol=1e-4, atol=1e-5)
    # 2 s in 0.5 s chunks: the model runs on each quarter of the normalised input, pooled over all frames
    chunked = SSLEncoder(model=str(wavlm), layer=1, chunk_s=0.5)
    from transformers import AutoFeatureExtractor, AutoModel

    values = AutoFeatureExtractor.from_pretrained(wavlm)([x], sampling_rate=SR, return_tensors="pt").input_values
    model = AutoModel.from_pretrained(wavlm).eval()
    with torch.no_grad():
        frames = torch.cat([model(c, output_hidden_states=True).hidden_states[1][0] for c in values.chunk(4, dim=1)])
    np.testing.assert_allclose(chunked.embed_utterance(x), frames.double().mean(0).numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(chunked.embed_utterance(x), SSLEncoder(model=str(wavlm), layer=1).embed_utterance(x))


def test_ssl_refuses_pickles_and_never_runs_model_code(tmp_path: Path) -> None:
    pickled = save_tiny_ssl(tmp_path / "pickled", safetensors=False)
    with pytest.raises(DataError, match="trust_checkpoint"):
        SSLEncoder(model=str(pickled))
    trusted = SSLEncoder(model=str(pickled), trust_checkpoint=True)
    assert trusted.embedding_dim == 3 * 32 and not trusted.model_loaded
    assert trusted.embed_utterance(signal(0.5, seed=0)).shape == (3 * 32,) and trusted.model_loaded
    # a folder whose config asks for its own Python code: loaded as the plain WavLM, the code never runs
    evil = save_tiny_ssl(tmp_path / "evil")
    marker = tmp_path / "ran"
    (evil / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n"
                                  "from transformers import WavLMModel\nclass Evil(WavLMModel):\n    pass\n")
    cfg = json.loads((evil / "config.json").read_text())
    cfg["auto_map"] = {"AutoModel": "evil.Evil", "AutoConfig": "evil.Evil"}
    (evil / "config.json").write_text(json.dumps(cfg))
    try:
        SSLEncoder(model=str(evil), layer=1)
    except Exception:  # refusing is fine too; running the file is not
        pass
    assert not marker.exists()


def test_ssl_bad_keys_are_named(wavlm: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="encoder.layer"):
        SSLEncoder(model=str(wavlm), layer=3)
    with pytest.raises(ConfigError, match="encoder.pooling"):
        SSLEncoder(model=str(wavlm), pooling="max")
    with pytest.raises(ConfigError, match="encoder.model"):
        SSLEncoder(model=None)
    with pytest.raises(DataError, match="not a model folder"):
        SSLEncoder(model=str(tmp_path / "missing"))


def test_ssl_store_key_holds_checksum_and_layer(wavlm: Path, tmp_path: Path) -> None:
    w = Windowing(window_s=None)
    k1 = store_key(SSLEncoder(model=str(wavlm), layer=1), w)
    assert k1["encoder"]["layer"] == 1 and k1["encoder"]["model_checksum"]
    assert store_key(SSLEncoder(model=str(wavlm), layer=2), w) != k1
    other = save_tiny_ssl(tmp_path / "wavlm")
    weights = other / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    k_other = store_key(SSLEncoder(model=str(other), layer=1), w)
    assert k_other["encoder"]["model_checksum"] != k1["encoder"]["model_checksum"]


def test_layer_sweep_reads_the_all_layer_store(wavlm: Path, tmp_path: Path) -> None:
    utts = []
    for i in range(4):
        p = tmp_path / "audio" / f"u{i}.wav"
        p.parent.mkdir(exist_ok=True)
        x = signal(0.8 + 0.1 * i, seed=i)
        sf.write(str(p), x, SR)
        utts.append(Utterance(id=f"u{i}", path=str(p), speaker=f"s{i % 2}", duration=len(x) / SR, sample_rate=SR))
    root, w = tmp_path / "store", Windowing(window_s=None)
    _, first = extract_or_reuse_layer(utts, SSLEncoder(model=str(wavlm), layer="all"), w, root, progress=False)
    assert first["n_embedded"] == 4
    for k in range(3):
        enc = SSLEncoder(model=str(wavlm), layer=k)
        view, summary = extract_or_reuse_layer(utts, enc, w, root, progress=False)
        assert isinstance(view, LayerView) and summary["n_embedded"] == 0 and summary["n_reused"] == 4
        assert view.meta["key"]["encoder"]["layer"] == k
        assert not enc.model_loaded  # every row came from the store: the weights were never read
        np.testing.assert_allclose(view.select(["u3", "u1"]), np.stack([enc.embed_utterance(
            SSLEncoder(model=str(wavlm), layer=k).frontend(sf.read(utts[j].path, dtype="float32")[0], SR))
            for j in (3, 1)]), rtol=1e-5, atol=1e-6)
    # a job asking for an utterance the all-layer store lacks extracts its own layer store
    more = utts + [Utterance(id="u9", path=utts[0].path.replace("u0", "u9"), speaker="s9", duration=1.0,
                             sample_rate=SR)]
    sf.write(more[-1].path, signal(1.0, seed=9), SR)
    store, summary = extract_or_reuse_layer(more, SSLEncoder(model=str(wavlm), layer=1), w, root, progress=False)
    assert not isinstance(store, LayerView) and summary["n_embedded"] == 5
