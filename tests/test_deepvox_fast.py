"""The fast DeepVOX formulation computes the reference's function: equal outputs and gradients
on random weights and on the shipped checkpoint's, with the same state-dict keys."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from deeptalk_ser.embedding.encoders.deeptalk import DeepVOX, build_net, load_checkpoint
from deeptalk_ser.embedding.encoders.deepvox_fast import FastDeepVOX, use_deepvox
from deeptalk_ser.training.losses import GE2ELoss
from deeptalk_ser.training.module import SpeakerEncoderModule

SHIPPED = Path(__file__).resolve().parents[1] / "src" / "deeptalk_ser" / "embedding" / "checkpoints" / "deeptalk_speechocean762.pt"
RTOL, ATOL = 1e-4, 1e-5  # as benchmarks/train_speed.py


def _assert_same_function(ref_net: torch.nn.Module, frames: torch.Tensor) -> None:
    fast_net = use_deepvox(copy.deepcopy(ref_net), "fast")
    assert type(fast_net.fCNN) is FastDeepVOX and type(ref_net.fCNN) is DeepVOX
    assert list(fast_net.state_dict()) == list(ref_net.state_dict())
    outs = []
    for net in (ref_net, fast_net):
        net.zero_grad()
        x = frames.clone().requires_grad_(True)
        emb = net(x)
        (emb * torch.linspace(-1, 1, emb.shape[-1])).sum().backward()
        outs.append((emb.detach(), x.grad, {n: p.grad for n, p in net.named_parameters() if p.grad is not None}))
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(outs[1][1], outs[0][1], rtol=RTOL, atol=ATOL)
    assert outs[1][2].keys() == outs[0][2].keys() and any(k.startswith("fCNN.11") for k in outs[0][2])
    for name in outs[0][2]:
        torch.testing.assert_close(outs[1][2][name], outs[0][2][name], rtol=RTOL, atol=ATOL, msg=name)


def test_fast_deepvox_equals_reference_on_random_weights() -> None:
    torch.manual_seed(0)
    _assert_same_function(build_net(3).train(), torch.randn(4, 30, 160))


def test_chunks_of_frames_compute_the_same_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames in chunks (uneven last chunk), forward and backward, equal the unchunked reference."""
    monkeypatch.setattr(FastDeepVOX, "chunk_frames", 7)
    torch.manual_seed(2)
    _assert_same_function(build_net(3).train(), torch.randn(3, 10, 160))  # 30 frames: 4 chunks of 7, one of 2


def test_fast_deepvox_equals_reference_on_the_shipped_checkpoint() -> None:
    net = build_net()
    load_checkpoint(net, SHIPPED)
    torch.manual_seed(1)
    _assert_same_function(net.eval(), torch.randn(3, 40, 160))


def test_a_wrong_last_layer_would_be_caught() -> None:
    """The comparison can fail: a fast forward reading the wrong taps differs from the reference."""
    class Broken(FastDeepVOX):
        def forward(self, frames: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            return super().forward(frames.roll(1, dims=-1))
    net = build_net(3)
    broken = copy.deepcopy(net)
    broken.fCNN.__class__ = Broken
    x = torch.randn(2, 10, 160)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(broken(x), net(x), rtol=RTOL, atol=ATOL)


def test_training_module_selects_the_formulation_without_moving_the_rng() -> None:
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    fast = SpeakerEncoderModule(loss=GE2ELoss(), optimizer=None, scheduler=None)
    assert torch.equal(torch.rand(1), expected)
    ref = SpeakerEncoderModule(loss=GE2ELoss(), optimizer=None, scheduler=None, deepvox="reference")
    assert type(fast.net.fCNN) is FastDeepVOX and type(ref.net.fCNN) is DeepVOX
    assert fast.state_dict().keys() == ref.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(fast.state_dict().values(), ref.state_dict().values()))
    assert fast.loss_fn.weight is fast.net.similarity_weight
    with pytest.raises(ValueError, match="unknown DeepVOX implementation 'nope'"):
        SpeakerEncoderModule(loss=GE2ELoss(), optimizer=None, scheduler=None, deepvox="nope")


def test_training_backward_goes_through_the_explicit_convolution_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast class's gradients come from ConvExplicitBackward on CPU (a wrong weight gradient there
    is caught by the comparison), and switching it off gives oneDNN's, equal too."""
    from deeptalk_ser.embedding.encoders import deepvox_fast

    torch.manual_seed(0)  # the inputs of test_fast_deepvox_equals_reference_on_random_weights
    net, x = build_net(3).train(), torch.randn(4, 30, 160)
    monkeypatch.setattr(FastDeepVOX, "explicit_backward", False)
    _assert_same_function(net, x)
    monkeypatch.setattr(FastDeepVOX, "explicit_backward", True)
    _assert_same_function(net, x)
    original = deepvox_fast.ConvExplicitBackward.backward

    def doubled(ctx, grad):  # type: ignore[no-untyped-def]
        gx, gw, gb, none = original(ctx, grad)
        return gx, 2 * gw, gb, none
    monkeypatch.setattr(deepvox_fast.ConvExplicitBackward, "backward", staticmethod(doubled))
    with pytest.raises(AssertionError):
        _assert_same_function(net, x)
