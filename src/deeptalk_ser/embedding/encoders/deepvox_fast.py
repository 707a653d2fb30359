"""A faster DeepVOX forward/backward on CPU with the reference's weights and mathematics.

:class:`~deeptalk_ser.embedding.encoders.deeptalk.DeepVOX` stays the definition (and the
checkpoint layout); :class:`FastDeepVOX` is a subclass with the same parameters that computes
the same function differently where that pays on CPU (measured in
``benchmarks/train_speed.py``, which asserts equal outputs and gradients):

- frames go through in chunks of :data:`CHUNK_FRAMES`: a 16 x 6 batch of 200-frame crops is
  19,200 frames whose intermediate activations overflow the caches; chunked, forward and
  backward of DeepVOX ran 1.5x faster on a quiet 2-core machine (the gain of this class);
- the last convolution has one output sample per frame (51 padded samples, kernel 11, dilation
  5), so it is a dense layer over the 11 dilated taps: ``F.linear`` on a strided slice instead of
  a convolution whose oneDNN backward handles a length-1 output poorly (a few per cent);
- the other convolutions stay oneDNN ``conv1d``: im2col + GEMM was about 2x slower and the
  reference code's wide ``Conv2d`` layout no faster; they run at 35-50 % of the matmul peak for
  the 8-32 channel layers, so what is left is the small layers and SELU. The training step gains
  about 1.4x (``benchmarks/train_speed.py``); the 2.5x aim of issue 24 is not met on CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deeptalk_ser.embedding.encoders.deeptalk import FRAME_LENGTH, N_FILTERS, DeepVOX

#: frames per DeepVOX pass: a 16 x 6 batch of 200-frame crops is 19,200 frames, whose
#: intermediate activations (32 channels x 51+ samples each) overflow the caches; chunks of 1200
#: frames were about 1.5x faster for DeepVOX alone on a quiet 2-core machine (benchmarks/train_speed.py)
CHUNK_FRAMES = 1200

#: ``encoder`` / training option values naming the DeepVOX formulation.
IMPLEMENTATIONS = ("reference", "fast")


class FastDeepVOX(DeepVOX):
    """:class:`DeepVOX` over chunks of frames, its last convolution as a dense layer (same state dict)."""

    chunk_frames: int = CHUNK_FRAMES

    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """(..., 160) frames -> (..., 40) features; equal to :meth:`DeepVOX.forward` up to float rounding."""
        if frames.shape[-1] != FRAME_LENGTH:
            raise ValueError(f"DeepVOX needs {FRAME_LENGTH}-sample frames, got {frames.shape[-1]}")
        lead = frames.shape[:-1]
        x = frames.reshape(-1, 1, FRAME_LENGTH)
        n = self.chunk_frames
        if len(x) > n:  # each chunk's activations stay in cache (forward and backward)
            x = torch.cat([self._features(x[i:i + n]) for i in range(0, len(x), n)])
        else:
            x = self._features(x)
        return x.reshape(*lead, N_FILTERS)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 160) frames -> (N, 40)."""
        layers = list(self)
        for layer in layers[:10]:  # five conv + SELU pairs
            if isinstance(layer, nn.Conv2d):
                x = F.conv1d(x, layer.weight.squeeze(-1), layer.bias, dilation=layer.dilation[0])
            else:
                x = layer(x)
        pad, last = layers[10], layers[11]
        x = F.pad(x, pad.padding[2:])  # (N, 32, 51)
        k, d = last.kernel_size[0], last.dilation[0]
        taps = x[:, :, : (k - 1) * d + 1 : d]  # (N, 32, 11): the only samples the last kernel sees
        return F.selu(F.linear(taps.reshape(len(x), -1), last.weight.reshape(last.out_channels, -1), last.bias))


def use_deepvox(net: nn.Module, implementation: str) -> nn.Module:
    """Switch ``net.fCNN`` to the named formulation in place, keeping its weights (and keys)."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"unknown DeepVOX implementation {implementation!r}; choose one of {IMPLEMENTATIONS}")
    cls = FastDeepVOX if implementation == "fast" else DeepVOX
    if type(net.fCNN) is not cls:
        with torch.random.fork_rng(devices=[]):  # the throw-away init must not move the global RNG
            new = cls().to(next(net.fCNN.parameters()).device)
        new.load_state_dict(net.fCNN.state_dict())
        new.train(net.fCNN.training)
        net.fCNN = new
    return net
