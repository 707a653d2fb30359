"""A faster DeepVOX forward/backward on CPU with the reference's weights and mathematics.

:class:`~deeptalk_ser.embedding.encoders.deeptalk.DeepVOX` stays the definition (and the
checkpoint layout); :class:`FastDeepVOX` is a subclass with the same parameters that computes
the same function differently where that pays on CPU (measured in
``benchmarks/train_speed.py``, which asserts equal outputs and gradients):

- the last convolution has one output sample per frame (51 padded samples, kernel 11, dilation
  5), so it is a dense layer over the 11 dilated taps: ``F.linear`` on a strided slice instead of
  a convolution whose oneDNN backward handles a length-1 output poorly;
- the other convolutions stay oneDNN ``conv1d``: im2col + GEMM was about 2x slower, and the
  reference code's wide ``Conv2d`` layout, frame chunks and ``torch.compile`` were not
  consistently faster on 2 shared cores (the benchmark's ``deepvox_tried`` table). The gain is
  small (about 1.05-1.15x per step); the 2.5x aim of issue 24 is not met.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deeptalk_ser.embedding.encoders.deeptalk import FRAME_LENGTH, N_FILTERS, DeepVOX

#: ``encoder`` / training option values naming the DeepVOX formulation.
IMPLEMENTATIONS = ("reference", "fast")


class FastDeepVOX(DeepVOX):
    """:class:`DeepVOX` with the last convolution as a dense layer (same state dict)."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """(..., 160) frames -> (..., 40) features; equal to :meth:`DeepVOX.forward` up to float rounding."""
        if frames.shape[-1] != FRAME_LENGTH:
            raise ValueError(f"DeepVOX needs {FRAME_LENGTH}-sample frames, got {frames.shape[-1]}")
        lead = frames.shape[:-1]
        x = frames.reshape(-1, 1, FRAME_LENGTH)
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
        x = F.selu(F.linear(taps.reshape(len(x), -1), last.weight.reshape(last.out_channels, -1), last.bias))
        return x.reshape(*lead, N_FILTERS)


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
