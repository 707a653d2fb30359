"""Tiny upstream models the tests build and save locally (no weights can be downloaded here): a
speaker network exported to ONNX, and randomly initialised WavLM / HuBERT folders saved with
``save_pretrained`` the way published models are laid out."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

N_BINS = 80


class TinySpeakerNet(nn.Module):
    """(batch, frames, bins) -> (batch, 16): a convolution over time, statistics pooling, a linear
    layer: the shape contract of WeSpeaker / 3D-Speaker ONNX files."""

    def __init__(self, bins: int = N_BINS, dim: int = 16) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv1d(bins, 24, kernel_size=3, padding=1)
        self.out = nn.Linear(48, dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(feats.transpose(1, 2)))
        return self.out(torch.cat([h.mean(2), h.std(2)], dim=1))


def export_tiny_onnx(path: Path, net: nn.Module | None = None) -> tuple[Path, nn.Module]:
    """``net`` (default :class:`TinySpeakerNet`) exported with dynamic batch and frame axes,
    named like WeSpeaker's files (``feats`` -> ``embs``)."""
    net = (TinySpeakerNet() if net is None else net).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(net, (torch.randn(2, 50, N_BINS),), str(path), input_names=["feats"], output_names=["embs"],
                      dynamic_axes={"feats": {0: "B", 1: "T"}, "embs": {0: "B"}}, dynamo=False)
    return path, net


def save_tiny_ssl(folder: Path, kind: str = "wavlm", safetensors: bool = True) -> Path:
    """A randomly initialised 2-layer WavLM (or HuBERT) and its feature extractor, saved with
    ``save_pretrained`` (``safetensors=False``: pickled ``pytorch_model.bin`` instead)."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

    config_cls, model_cls = (WavLMConfig, WavLMModel) if kind == "wavlm" else (HubertConfig, HubertModel)
    cfg = config_cls(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=16,
                     num_conv_pos_embedding_groups=2, num_buckets=16, max_bucket_distance=64,
                     initializer_range=0.3)  # wide init: layers differ (at 0.02 they are near copies of layer 0)
    torch.manual_seed(0)
    model = model_cls(cfg).eval()
    model.save_pretrained(folder)
    if not safetensors:  # transformers writes safetensors only: pickle the same weights as old checkpoints did
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=False).save_pretrained(folder)
    return folder
