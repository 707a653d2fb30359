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
- the other convolutions run forward as oneDNN ``conv1d`` (35-50 % of the matmul peak for the
  8-32 channel layers; im2col + GEMM was about 2x slower, the reference code's wide ``Conv2d``
  layout no faster), but on CPU their backward is not oneDNN's convolution backward (69 % of the
  step, at a third of the forward's rate): :class:`ConvExplicitBackward` takes the input gradient
  as ``conv_transpose1d`` and the weight gradient as a strided ``conv1d`` with the frames as
  channels, both on oneDNN's fast forward kernels (DeepVOX alone 1.35x -> 1.58x of the
  reference). The training step gains 1.78x and 1.95x in the two repeats of
  ``benchmarks/results/train_speed.json``; the 2.5x aim of issue 24 is not met on CPU.
"""

from __future__ import annotations

from typing import Any

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


class ConvExplicitBackward(torch.autograd.Function):
    """``conv1d`` whose backward avoids oneDNN's convolution backward: input gradient as
    ``conv_transpose1d``, weight gradient as the correlation of input and output gradient (a
    strided ``conv1d`` with the frames as channels), bias gradient as a sum. The same
    mathematics; gradients equal the autograd ones to float rounding (tests/test_deepvox_fast.py)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,  # type: ignore[override]
                dilation: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.dilation = dilation
        return F.conv1d(x, weight, bias, dilation=dilation)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        d = ctx.dilation
        gx = F.conv_transpose1d(grad, weight, dilation=d) if ctx.needs_input_grad[0] else None
        # dL/dw[o, i, t] = sum_{n, l} grad[n, o, l] x[n, i, l + d t]: a conv1d over (C_in, N, L) with
        # the (C_out, N, L_out) output gradient as its kernel, stride d -> (C_in, C_out, k)
        gw = F.conv1d(x.transpose(0, 1), grad.transpose(0, 1), stride=d).transpose(0, 1)
        return gx, gw, grad.sum((0, 2)), None


class FastDeepVOX(DeepVOX):
    """:class:`DeepVOX` over chunks of frames, its last convolution as a dense layer, the others'
    backward through :class:`ConvExplicitBackward` on CPU (same state dict)."""

    chunk_frames: int = CHUNK_FRAMES
    #: False: oneDNN's own convolution backward (the benchmark's comparison; always on CUDA or
    #: under autocast, where it was not measured)
    explicit_backward: bool = True

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
        explicit = (self.explicit_backward and x.device.type == "cpu" and torch.is_grad_enabled()
                    and not torch.is_autocast_enabled("cpu"))
        for layer in layers[:10]:  # five conv + SELU pairs
            if isinstance(layer, nn.Conv2d):
                w, d = layer.weight.squeeze(-1), layer.dilation[0]
                x = ConvExplicitBackward.apply(x, w, layer.bias, d) if explicit else F.conv1d(x, w, layer.bias, dilation=d)
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
