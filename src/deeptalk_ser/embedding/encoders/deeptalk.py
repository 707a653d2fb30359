"""The DeepTalk speaker encoder: DeepVOX learned filterbank + Global Style Token layer.

A re-implementation from the spec (``docs/deeptalk.md`` section 2) with the reference's
module names and tensor shapes, so that a reference ``model_GST.pt`` checkpoint loads into it
unchanged: ``fCNN`` (DeepVOX, per-frame 1-D convolutions, kept as ``Conv2d`` with ``(k, 1)``
kernels for state-dict compatibility), ``gst`` (reference encoder + style-token attention),
and the GE2E scalars ``similarity_weight`` / ``similarity_bias``.

Frames (B, T, 160) -> DeepVOX -> (B, T, 40) -> GST -> (B, 256) -> L2-normalise.

Speed: DeepVOX maps every frame on its own and costs about 7x the GST per 200-frame crop, so
:meth:`DeepTalkEncoder.embed_windowed` frames an utterance and runs DeepVOX once, then runs
only the GST on each window's slice of the shared filterbank output. This is exact for the
per-window definition (each window framed on its own, see :meth:`embed_windowed_reference`)
because framing, frame dropping, z-scoring and DeepVOX are all per-frame operations and a
window starting at a multiple of the 80-sample frame hop contains exactly the utterance's
frames that fall inside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import pickle
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deeptalk_ser.data.audio.framing import (FRAME_HOP, FRAME_LENGTH, SAMPLE_RATE, frame_mask, frame_signal,
                             frame_windows, n_frames)
from deeptalk_ser.data.audio.frontend import AudioFrontend, VADConfig
from deeptalk_ser.embedding.encoders.base import SpeakerEncoder
from deeptalk_ser.utils.errors import ConfigError, DataError

log = logging.getLogger(__name__)

EMBEDDING_DIM = 256
N_FILTERS = 40  # DeepVOX outputs per frame
#: ``encoder.output``: DeepTalk's embedding or one of its inner outputs, and its dimension
OUTPUT_DIMS = {"embedding": 256, "filterbank_stats": 2 * N_FILTERS, "gst_query": 128, "gst_attention": 8 * 10}
PARTIAL_FRAMES = 200  # the reference's training crop and utterance partial (2.01 s)
RANDOM_INIT_SEED = 0
#: Blocks present in reference checkpoints that the DeepTalk forward pass never uses.
REFERENCE_UNUSED_PREFIXES = ("OneDCNN.", "lstm.", "linear.")
#: Frames per DeepVOX call; bounds memory on long utterances (about 6 kB of activations a frame).
_FILTERBANK_CHUNK = 16384

# DeepVOX: (in, out, kernel, dilation) of the five convolutions before the zero pad ...
_DEEPVOX_CONVS = ((1, 2, 5, 2), (2, 4, 5, 2), (4, 8, 7, 3), (8, 16, 9, 4), (16, 32, 11, 5))
# ... the pad along the sample axis (before, after), and the last convolution: 51 -> 1 sample.
_DEEPVOX_PAD = (3, 4)
_DEEPVOX_LAST = (32, N_FILTERS, 11, 5)


# --------------------------------------------------------------------------------------------
# Network


class DeepVOX(nn.Sequential):
    """Learned filterbank: one 160-sample frame -> 40 features, every frame independently.

    Layers (state-dict indices): conv 0, 2, 4, 6, 8 and 11 (``Conv2d`` with ``(k, 1)`` kernels and
    ``(d, 1)`` dilation, as in the reference), SELU after every conv (1, 3, 5, 7, 9, 12), and a
    zero pad of 3 before / 4 after along the sample axis at index 10. The forward pass runs the
    same weights as 1-D convolutions over ``(frames, channels, samples)``, which is the
    reference's ``(B, 1, 160, T)`` computation with the frames moved into the batch.
    """

    def __init__(self) -> None:
        layers: list[nn.Module] = []
        for c_in, c_out, k, d in _DEEPVOX_CONVS:
            layers += [nn.Conv2d(c_in, c_out, kernel_size=(k, 1), dilation=(d, 1)), nn.SELU()]
        c_in, c_out, k, d = _DEEPVOX_LAST
        layers += [nn.ZeroPad2d((0, 0, *_DEEPVOX_PAD)),
                   nn.Conv2d(c_in, c_out, kernel_size=(k, 1), dilation=(d, 1)), nn.SELU()]
        super().__init__(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """(..., 160) frames -> (..., 40) features."""
        if frames.shape[-1] != FRAME_LENGTH:
            raise ValueError(f"DeepVOX needs {FRAME_LENGTH}-sample frames, got {frames.shape[-1]}")
        lead = frames.shape[:-1]
        x = frames.reshape(-1, 1, FRAME_LENGTH)
        for layer in self:
            if isinstance(layer, nn.Conv2d):
                x = F.conv1d(x, layer.weight.squeeze(-1), layer.bias, dilation=layer.dilation[0])
            elif isinstance(layer, nn.ZeroPad2d):
                x = F.pad(x, layer.padding[2:])  # (top, bottom) of the 2-D pad = the sample axis
            else:
                x = layer(x)
        return x.reshape(*lead, N_FILTERS)


class ReferenceEncoder(nn.Module):
    """The (T, 40) feature map as a 1-channel image -> 6 strided conv/BN/ReLU -> GRU last state."""

    def __init__(self, n_features: int = N_FILTERS, filters: tuple[int, ...] = (32, 32, 64, 64, 128, 128),
                 hidden: int = EMBEDDING_DIM // 2) -> None:
        super().__init__()
        channels = (1, *filters)
        self.convs = nn.ModuleList(nn.Conv2d(channels[i], channels[i + 1], kernel_size=3, stride=2, padding=1)
                                   for i in range(len(filters)))
        self.bns = nn.ModuleList(nn.BatchNorm2d(c) for c in filters)
        width = n_features
        for _ in filters:
            width = (width - 3 + 2) // 2 + 1  # 40 -> 20 -> 10 -> 5 -> 3 -> 2 -> 1
        self.gru = nn.GRU(input_size=filters[-1] * width, hidden_size=hidden, batch_first=True)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, 40) -> (B, 128)."""
        x = features.unsqueeze(1)
        for conv, bn in zip(self.convs, self.bns):
            x = F.relu(bn(conv(x)))
        b, c, t, w = x.shape
        x = x.transpose(1, 2).reshape(b, t, c * w)  # channel-major per time step, as the reference
        # The GRU runs in fp32 even under autocast: it is tiny (T/64 steps) and bf16 RNN kernels
        # are not available everywhere.
        with torch.autocast(device_type=x.device.type, enabled=False):
            _, h = self.gru(x.float())
        return h[-1]


class TokenAttention(nn.Module):
    """Multi-head attention of one query over the style tokens (bias-free projections)."""

    def __init__(self, query_dim: int, key_dim: int, num_units: int, num_heads: int) -> None:
        super().__init__()
        if num_units % num_heads:
            raise ValueError(f"{num_units} units do not split into {num_heads} heads")
        self.key_dim = key_dim
        self.num_heads = num_heads
        self.W_query = nn.Linear(query_dim, num_units, bias=False)
        self.W_key = nn.Linear(key_dim, num_units, bias=False)
        self.W_value = nn.Linear(key_dim, num_units, bias=False)

    def weights(self, query: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """query (B, query_dim), tokens (K, key_dim) -> (B, heads, K) softmax attention weights."""
        h = self.num_heads
        q = self.W_query(query).unflatten(-1, (h, -1))  # (B, h, d)
        k = self.W_key(tokens).unflatten(-1, (h, -1))  # (K, h, d)
        # The reference scales by the token (key) dimension, which equals the head size here.
        return (torch.einsum("bhd,khd->bhk", q, k) / math.sqrt(self.key_dim)).softmax(dim=-1)

    def forward(self, query: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """query (B, query_dim), tokens (K, key_dim) -> (B, num_units), heads concatenated."""
        v = self.W_value(tokens).unflatten(-1, (self.num_heads, -1))
        out = torch.einsum("bhk,khd->bhd", self.weights(query, tokens), v)
        return out.flatten(-2)


class StyleTokenLayer(nn.Module):
    """10 learned tokens (tanh-squashed in forward) attended by the reference-encoder state."""

    def __init__(self, n_tokens: int = 10, num_units: int = EMBEDDING_DIM, num_heads: int = 8) -> None:
        super().__init__()
        token_dim = num_units // num_heads
        self.embed = nn.Parameter(torch.empty(n_tokens, token_dim))
        nn.init.normal_(self.embed, mean=0.0, std=0.5)
        self.attention = TokenAttention(num_units // 2, token_dim, num_units, num_heads)

    def forward(self, query: torch.Tensor) -> torch.Tensor:
        return self.attention(query, torch.tanh(self.embed))


def gst_attention_weights(stl: StyleTokenLayer, query: torch.Tensor) -> torch.Tensor:
    """(B, 128) reference-encoder states -> (B, heads, tokens) softmax weights of the token attention."""
    return stl.attention.weights(query, torch.tanh(stl.embed))


class GST(nn.Module):
    """Global Style Token layer: (B, T, 40) -> (B, 256), not normalised."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = ReferenceEncoder()
        self.stl = StyleTokenLayer()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.stl(self.encoder(features))


class DeepTalkNet(nn.Module):
    """DeepTalk's speaker encoder network; the state-dict layout is the reference's.

    ``similarity_weight`` / ``similarity_bias`` are the GE2E loss scalars (init 10 / -5). They
    are not used by :meth:`forward`; they live here so a checkpoint round-trips with them (hand
    them with :meth:`deeptalk_ser.training.losses.GE2ELoss.bind` when training with GE2E).
    """

    def __init__(self) -> None:
        super().__init__()
        self.fCNN = DeepVOX()
        self.gst = GST()
        self.similarity_weight = nn.Parameter(torch.tensor([10.0]))
        self.similarity_bias = nn.Parameter(torch.tensor([-5.0]))

    def filterbank(self, frames: torch.Tensor) -> torch.Tensor:
        """(..., 160) z-scored frames -> (..., 40): the part shared by overlapping windows."""
        return self.fCNN(frames)

    def embed_filterbank(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, 40) -> (B, 256) L2-normalised embeddings."""
        return F.normalize(self.gst(features).float(), p=2, dim=1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, 160) z-scored frames -> (B, 256) L2-normalised embeddings."""
        return self.embed_filterbank(self.filterbank(frames))


def build_net(seed: int = RANDOM_INIT_SEED) -> DeepTalkNet:
    """A freshly initialised :class:`DeepTalkNet`, reproducible and without touching global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DeepTalkNet()


# --------------------------------------------------------------------------------------------
# Checkpoints


class CheckpointError(DataError):
    """A checkpoint that does not fit :class:`DeepTalkNet`; the message names file and keys
    (a user error: the entry scripts print it as one line)."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(path, problem)


def _checkpoint_safe_types() -> list[Any]:
    """What a Lightning checkpoint holds besides tensors: its hyper-parameters as OmegaConf
    containers. Data only (no callables), so allowed in a tensors-only load."""
    import collections
    import typing

    from omegaconf import DictConfig, ListConfig
    from omegaconf.base import ContainerMetadata, Metadata
    from omegaconf.nodes import AnyNode

    return [DictConfig, ListConfig, ContainerMetadata, Metadata, AnyNode, typing.Any, dict, list, int,
            collections.defaultdict]


def _torch_load(path: str | Path, trust: bool = False) -> Any:
    """Load a checkpoint on CPU, tensors-only (a pickle can run code when it is loaded).

    A file that holds other objects is refused unless ``trust`` (``encoder.trust_checkpoint=true``)
    says it comes from someone the user trusts."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint file")
    try:
        with torch.serialization.safe_globals(_checkpoint_safe_types()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust:
            if "unsupported global" in str(exc).lower():
                raise CheckpointError(path, "holds objects other than tensors and plain containers; loading it "
                                            "could run code. Export the weights (training/export.py) or, only for "
                                            "a file you trust, set encoder.trust_checkpoint=true") from exc
            raise CheckpointError(path, "cannot be read by torch.load as a tensors-only checkpoint (a corrupt file, "
                                        "or pickled objects: encoder.trust_checkpoint=true reads those, only for a "
                                        f"file you trust): {exc!r}") from exc
    except Exception as exc:  # a corrupt file can fail in many ways inside the unpickler
        raise CheckpointError(path, f"cannot be read by torch.load: {exc!r}") from exc
    log.warning("%s holds non-tensor objects; full unpickling because encoder.trust_checkpoint=true", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(path, f"cannot be read by torch.load: {exc!r}") from exc


def _load_checked(model: nn.Module, state: Mapping[str, Any], path: str | Path,
                  ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Load ``state`` into ``model`` after checking every key and shape; errors list them all.

    Keys under ``ignore_prefixes`` are skipped. The only key allowed to be absent is a BatchNorm
    ``num_batches_tracked`` counter (not used in eval mode; older files may lack it).
    """
    expected = model.state_dict()
    given = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    missing = [k for k in expected if k not in given and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in given if k not in expected]
    not_tensor = [k for k, v in given.items() if k in expected and not isinstance(v, torch.Tensor)]
    mismatched = [f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
                  for k, v in given.items()
                  if k in expected and isinstance(v, torch.Tensor) and v.shape != expected[k].shape]
    problems = []
    for what, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                       ("non-tensor values", not_tensor), ("shape mismatches", mismatched)):
        if keys:
            problems.append(f"{what} ({len(keys)}): {', '.join(keys)}")
    if problems:
        raise CheckpointError(path, "does not fit the DeepTalk network: " + "; ".join(problems))
    model.load_state_dict(given, strict=False)  # everything was checked above


def load_reference_checkpoint(model: DeepTalkNet, path: str | Path, trust: bool = False) -> int | None:
    """Load a reference ``torch.save({"step", "model_state", "optimizer_state"})`` file.

    The unused ``OneDCNN.*``, ``lstm.*`` and ``linear.*`` blocks are ignored by name; anything
    else missing, unexpected or mis-shaped raises :class:`CheckpointError`. Returns the step.
    """
    obj = _torch_load(path, trust)
    if not isinstance(obj, Mapping) or "model_state" not in obj:
        raise CheckpointError(path, "not a reference DeepTalk checkpoint (no 'model_state' entry)")
    _load_checked(model, obj["model_state"], path, REFERENCE_UNUSED_PREFIXES)
    step = obj.get("step")
    return int(step) if step is not None else None


def _own_state(obj: Mapping[str, Any], path: str | Path) -> dict[str, Any]:
    """The network's entries of a Lightning checkpoint or a (possibly prefixed) state dict.

    The prefix is found from the one key ending in ``fCNN.0.weight`` (e.g. ``model.`` in a
    LightningModule holding the net as ``self.model``); keys outside it (a loss, an optimizer)
    are not the network's and are skipped.
    """
    state = obj["state_dict"] if isinstance(obj.get("state_dict"), Mapping) else obj
    anchor = "fCNN.0.weight"
    hits = [k for k in state if k == anchor or k.endswith("." + anchor)]
    if len(hits) != 1:
        raise CheckpointError(path, f"cannot locate the DeepTalk network: expected one key ending in "
                                    f"{anchor!r}, found {hits or 'none'}")
    prefix = hits[0][: -len(anchor)]
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_checkpoint(model: DeepTalkNet, path: str | Path, trust: bool = False) -> str:
    """Load any supported checkpoint into ``model``; returns a description of what was loaded.

    Format detection: a dict with ``model_state`` is a reference checkpoint; a dict with
    ``state_dict`` is a Lightning checkpoint; any other dict is a plain ``state_dict()`` file.
    """
    obj = _torch_load(path, trust)
    if not isinstance(obj, Mapping):
        raise CheckpointError(path, f"expected a dict, got {type(obj).__name__}")
    if "model_state" in obj:
        step = load_reference_checkpoint(model, path, trust)
        return f"reference checkpoint (step {step})"
    if isinstance(obj.get("state_dict"), Mapping):
        kind = "exported encoder" if isinstance(obj.get("meta"), Mapping) else "Lightning checkpoint"
    else:
        kind = "state dict"
    _load_checked(model, _own_state(obj, path), path)
    return kind


def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Encoder


def deeptalk_frontend() -> AudioFrontend:
    """The reference's front end: 8 kHz, -30 dBFS increase-only, webrtcvad (3, 30 ms, 8, 7)."""
    return AudioFrontend(sample_rate=SAMPLE_RATE, resample_quality="HQ", normalize_dbfs=-30.0,
                         increase_only=True,
                         vad=VADConfig(enabled=True, aggressiveness=3, window_ms=30, smoothing=8, dilation=7))


def reference_partial_starts(n_samples: int, partial: int = PARTIAL_FRAMES, overlap: float = 0.5,
                             min_coverage: float = 0.75) -> np.ndarray:
    """Start frames of the reference ``embed_utterance`` partials (empty if too short).

    The reference estimates the frame count from the sample count as ``ceil((n + 1) / 80)``
    (not the true ``1 + (n - 160) // 80``) and uses that both for the too-short test and for the
    slicing; we keep its arithmetic so that the partials are the same.
    """
    est = math.ceil((n_samples + 1) / FRAME_HOP)
    if est < partial:
        return np.zeros(0, dtype=np.int64)
    step = max(int(round(partial * (1 - overlap))), 1)
    steps = max(1, est - partial + step + 1)
    steps = (steps // step) * step
    starts = list(range(0, steps, step))
    coverage = (n_samples - starts[-1] * FRAME_HOP) / (partial * FRAME_HOP)
    if coverage < min_coverage and len(starts) > 1:
        starts.pop()
    return np.asarray(starts, dtype=np.int64)


def reference_partial_frames(wav: np.ndarray) -> np.ndarray | None:
    """The (P, 200, 160) partial crops of the reference ``embed_utterance``, or None if too short.

    Faithful to the reference's quirks: the too-short test and the partial grid use the
    estimated frame count ``ceil((n + 1) / 80)`` (:func:`reference_partial_starts`); the waveform
    is zero-padded to the last partial's end; partials index the frame sequence *after* dropped
    frames are removed; and if that sequence is still short, its last frames are repeated
    (``frames[-pad:]``). Where the reference would fail (more padding needed than frames exist)
    the frames are tiled. None also when no frame is usable.
    """
    starts = reference_partial_starts(len(wav))
    if len(starts) == 0:
        return None
    stop = int(starts[-1]) + PARTIAL_FRAMES
    wav = np.asarray(wav, np.float32)
    if stop * FRAME_HOP >= len(wav):
        wav = np.pad(wav, (0, stop * FRAME_HOP - len(wav)))
    frames = frame_signal(wav)
    if len(frames) == 0:
        return None
    if len(frames) < stop:
        frames = np.concatenate((frames, frames[-(stop - len(frames)):]))
    if len(frames) < stop:
        frames = np.tile(frames, (math.ceil(stop / len(frames)), 1))
    return frames[starts[:, None] + np.arange(PARTIAL_FRAMES)]


def _mean_normalised(partials: np.ndarray) -> np.ndarray:
    """The reference's utterance embedding: mean of the partial embeddings, L2-normalised."""
    mean = partials.mean(axis=0)
    return (mean / np.linalg.norm(mean)).astype(np.float32)


class DeepTalkEncoder(SpeakerEncoder):
    """DeepTalk embeddings of 8 kHz audio (256-d, L2-normalised per window).

    ``checkpoint``: ``None`` for a random (seeded) initialisation, which is only good for tests
    and plumbing, or a path to a reference ``model_GST.pt``-style file, a Lightning checkpoint or
    a ``state_dict()`` file (see :func:`load_checkpoint`). ``bf16`` enables bfloat16 autocast on
    CUDA (ignored on CPU, which always runs fp32). ``trust_checkpoint`` allows a checkpoint that
    is not tensors-only to be unpickled (which can run code): only for files you trust.

    Windows whose frames were all dropped (an all-zero window) get a NaN embedding: there is no
    embedding for them, and a NaN makes that visible instead of biasing an average.
    """
    name = "deeptalk"

    embedding_dim = EMBEDDING_DIM
    normalized = True

    def __init__(self, frontend: AudioFrontend | dict | None = None, device: str = "cpu",
                 checkpoint: str | None = None, batch_size: int = 256, bf16: bool = False,
                 seed: int = RANDOM_INIT_SEED, trust_checkpoint: bool = False, output: str = "embedding") -> None:
        super().__init__(deeptalk_frontend() if frontend is None else frontend, device=device)
        if output not in OUTPUT_DIMS:
            raise ConfigError("encoder.output", f"{output!r} is not one of {list(OUTPUT_DIMS)}")
        self.output = output
        if output != "embedding":  # an inner output: its own dimension, name and store key
            self.embedding_dim = OUTPUT_DIMS[output]  # type: ignore[misc]
            self.normalized = False  # type: ignore[misc]
            self.name = f"deeptalk_{output}"  # type: ignore[misc]
        if self.frontend.sample_rate != SAMPLE_RATE:
            raise ValueError(f"DeepTalk works on {SAMPLE_RATE} Hz audio (160-sample frames = 20 ms); "
                             f"the frontend resamples to {self.frontend.sample_rate} Hz")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.torch_device = torch.device(self.device)  # 'auto' already resolved by SpeakerEncoder
        self.batch_size = batch_size
        self.bf16 = bool(bf16) and self.torch_device.type == "cuda"
        if bf16 and not self.bf16:
            log.info("bf16 autocast requested on %s: ignored, running fp32", self.torch_device)
        self.net = build_net(seed)
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        if self.checkpoint is None:
            self._checkpoint_id: dict[str, Any] = {"random_init_seed": seed}
            log.warning("DeepTalk encoder has NO CHECKPOINT: random weights (seed %d). Its embeddings "
                        "carry no speaker information; use this only for tests.", seed)
        else:
            loaded = load_checkpoint(self.net, self.checkpoint, trust=trust_checkpoint)
            # the content hash, not the path, identifies the weights (two checkouts share caches)
            self._checkpoint_id = {"file": Path(self.checkpoint).name, "sha256": _sha256(self.checkpoint)}
            log.info("DeepTalk encoder: loaded %s from %s", loaded, self.checkpoint)
        self.net.to(self.torch_device).eval()

    # -- running the network ----------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.bf16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def embed_frames(self, frames: np.ndarray) -> np.ndarray:
        """(B, T, 160) z-scored frames -> (B, 256) float32 embeddings."""
        x = torch.as_tensor(np.asarray(frames, np.float32), device=self.torch_device)
        with self._autocast():
            if self.output != "embedding":
                return self._inner(self.net.filterbank(x)).float().cpu().numpy()
            return self.net(x).float().cpu().numpy()

    def _inner(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, 40) DeepVOX features -> ``self.output`` of each sequence (see :data:`OUTPUT_DIMS`)."""
        if self.output == "embedding":
            return self.net.embed_filterbank(features)
        if self.output == "filterbank_stats":
            f = features.float()
            return torch.cat([f.mean(dim=1), f.std(dim=1, unbiased=False)], dim=1)
        query = self.net.gst.encoder(features)
        if self.output == "gst_query":
            return query
        return gst_attention_weights(self.net.gst.stl, query).flatten(1)

    @torch.inference_mode()
    def _filterbank(self, frames: np.ndarray) -> torch.Tensor:
        """(M, 160) frames -> (M, 40) DeepVOX features on the device, in bounded chunks."""
        out = torch.empty((len(frames), N_FILTERS), device=self.torch_device)
        for i in range(0, len(frames), _FILTERBANK_CHUNK):
            x = torch.as_tensor(frames[i:i + _FILTERBANK_CHUNK], device=self.torch_device)
            with self._autocast():
                out[i:i + len(x)] = self.net.filterbank(x).float()
        return out

    @torch.inference_mode()
    def _embed_segments(self, features: torch.Tensor, starts: np.ndarray, lengths: np.ndarray,
                        batch_size: int) -> np.ndarray:
        """GST embeddings of contiguous segments ``features[s:s + n]`` of the kept-frame features.

        Segments are batched by length (dropped frames make lengths differ); a segment of
        length 0 gets NaN.
        """
        out = np.full((len(starts), self.embedding_dim), np.nan, np.float32)
        for length in np.unique(lengths):
            if length == 0:
                continue
            which = np.flatnonzero(lengths == length)
            offsets = torch.arange(int(length), device=self.torch_device)
            for i in range(0, len(which), batch_size):
                chunk = which[i:i + batch_size]
                index = torch.as_tensor(starts[chunk], device=self.torch_device)[:, None] + offsets
                with self._autocast():
                    out[chunk] = self._inner(features[index]).float().cpu().numpy()
        n_empty = int((lengths == 0).sum())
        if n_empty:
            log.warning("%d of %d windows have no usable frame (all zero): NaN embeddings", n_empty, len(lengths))
        return out

    # -- SpeakerEncoder interface -----------------------------------------------------------

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """(B, n) 8 kHz windows -> (B, 256): each window framed on its own, dropped frames removed.

        A window with dropped frames is embedded from its remaining frames (a shorter sequence;
        the GST accepts any length), never padded, so that every window is embedded exactly as
        if it were a whole utterance.
        """
        windows = np.asarray(windows, np.float32)
        z, keep = frame_windows(windows)
        lengths = keep.sum(axis=1)
        starts = np.cumsum(lengths) - lengths  # kept frames are stored window after window
        features = self._filterbank(z[keep])
        return self._embed_segments(features, starts, lengths, self.batch_size)

    def embed_windowed(self, wav: np.ndarray, window: int, hop: int, batch_size: int | None = None) -> np.ndarray:
        """Exact fast path: frame + DeepVOX the utterance once, GST per window.

        ``batch_size`` (windows per GST call) defaults to the encoder's ``batch_size``.

        Requires ``hop`` to be a multiple of the 80-sample frame hop (the paper's 10 ms is one
        frame); otherwise windows do not share frames and this falls back to the reference path.
        Window ``w`` holds the utterance frames ``[w * hop / 80, w * hop / 80 + F)`` with
        ``F = 1 + (window - 160) // 80``; its kept frames are a contiguous run of the utterance's
        kept frames, found with a prefix count.
        """
        batch_size = batch_size or self.batch_size
        n = 0 if len(wav) < window else 1 + (len(wav) - window) // hop
        if n <= 0:
            return np.zeros((0, self.embedding_dim), np.float32)
        if hop % FRAME_HOP or window < FRAME_LENGTH:
            return self.embed_windowed_reference(wav, window, hop, batch_size)
        z, keep, _ = frame_mask(np.asarray(wav, np.float32))
        first = np.arange(n) * (hop // FRAME_HOP)
        kept_before = np.concatenate(([0], np.cumsum(keep)))
        starts = kept_before[first]
        lengths = kept_before[first + n_frames(window)] - starts
        features = self._filterbank(z[keep])
        return self._embed_segments(features, starts, lengths, batch_size)

    def embed_windowed_reference(self, wav: np.ndarray, window: int, hop: int,
                                 batch_size: int | None = None) -> np.ndarray:
        """The straightforward path: slice every window and embed it on its own (tests, benchmarks)."""
        return SpeakerEncoder.embed_windowed(self, wav, window, hop, batch_size or self.batch_size)

    def embed_utterance(self, wav: np.ndarray) -> np.ndarray | None:
        """The reference ``embed_utterance`` (see :func:`reference_partial_frames`)."""
        batch = reference_partial_frames(wav)
        if batch is None:
            return None
        partials = np.concatenate([self.embed_frames(batch[i:i + self.batch_size])
                                   for i in range(0, len(batch), self.batch_size)])
        return _mean_normalised(partials) if self.output == "embedding" else partials.mean(axis=0).astype(np.float32)

    @staticmethod
    @torch.no_grad()
    def embed_with_net(net: DeepTalkNet, wav: np.ndarray, batch_size: int = 64) -> np.ndarray | None:
        """:meth:`embed_utterance` with a bare network on its own device (training validation).

        The caller sets the network's mode (``eval()`` for BatchNorm running statistics).
        """
        batch = reference_partial_frames(wav)
        if batch is None:
            return None
        device = next(net.parameters()).device
        partials = np.concatenate([net(torch.as_tensor(batch[i:i + batch_size], device=device)).float().cpu().numpy()
                                   for i in range(0, len(batch), batch_size)])
        return _mean_normalised(partials)

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        if self.output != "embedding":  # the embedding's key stays as it was: its stores are reused
            cfg["output"] = self.output
        cfg.update(checkpoint=self._checkpoint_id, bf16=self.bf16,
                   framing={"frame": FRAME_LENGTH, "hop": FRAME_HOP, "window": "hamming",
                            "zscore_ddof": 1, "drop": "all-zero, non-finite"})
        return cfg
