"""A checkpoint that is not tensors-only never runs code unless the user opts in."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from deeptalk_ser.embedding.encoders.deeptalk import CheckpointError, build_net, load_checkpoint


class _Payload:
    """Unpickling this creates ``marker`` (a stand-in for any command)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def _malicious(tmp_path: Path, protocol: int = pickle.DEFAULT_PROTOCOL) -> tuple[Path, Path]:
    marker = tmp_path / "payload_ran"
    ckpt = tmp_path / "evil.pt"
    state = {k: v for k, v in build_net(0).state_dict().items()}
    torch.save({"state_dict": state, "extra": _Payload(marker)}, ckpt, pickle_protocol=protocol)
    return ckpt, marker


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_code_in_a_checkpoint_does_not_run_by_default(tmp_path, protocol):
    ckpt, marker = _malicious(tmp_path, protocol)
    with pytest.raises(CheckpointError, match="trust_checkpoint"):
        load_checkpoint(build_net(0), ckpt)
    assert not marker.exists(), "the pickle payload ran"


def test_trusted_opt_in_unpickles(tmp_path):
    ckpt, marker = _malicious(tmp_path)
    assert load_checkpoint(build_net(0), ckpt, trust=True) == "Lightning checkpoint"
    assert marker.exists()  # the opt-in really is a full unpickle: documented, never the default


def test_tensors_only_checkpoint_loads_without_opt_in(tmp_path):
    ckpt = tmp_path / "plain.pt"
    torch.save({"state_dict": build_net(0).state_dict(), "epoch": 3}, ckpt)
    assert load_checkpoint(build_net(0), ckpt) == "Lightning checkpoint"
