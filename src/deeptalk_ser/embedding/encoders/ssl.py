"""``encoder=ssl``: a self-supervised speech model (WavLM, HuBERT, wav2vec 2.0, ...) read layer by
layer, the SUPERB / s3prl way: the hidden states of one layer (``layer=k``, 0 = the CNN
features' projection) or of every layer (``layer=all``), pooled over time (mean, or mean and
standard deviation).

Loaded with ``transformers``' Auto classes from a local folder or a hub name, safetensors only
and never with remote code, so a model folder is data: pickled ``.bin`` weights load only when
the user sets ``encoder.trust_checkpoint=true``. Long inputs run in chunks of ``chunk_s``
seconds (memory bounded); pooling then spans every chunk's frames. With ``layer=all`` a row
holds each layer's pooled block in order, so any layer is a column slice of it
(``embedding/layers.py`` reads a layer sweep from that one store).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np

from deeptalk_ser.embedding.encoders.base import SpeakerEncoder
from deeptalk_ser.utils.errors import ConfigError, DataError
from deeptalk_ser.utils.io import file_checksum, stable_hash
from deeptalk_ser.utils.progress import progress_disabled

POOLINGS = ("mean", "mean+std")
#: files a model folder is read from (and checksummed); .bin only with trust_checkpoint
SAFE_PATTERNS = ["*.json", "*.safetensors"]


def model_folder(model: str, revision: str | None, trust_checkpoint: bool) -> Path:
    """A local folder as it is; a hub name downloaded (or found in the hub cache) with only the
    files loading needs."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists() or model.startswith((".", "/", "~")):
        raise DataError(path, "not a model folder (encoder.model: a folder saved with save_pretrained, or a hub name)")
    from huggingface_hub import snapshot_download

    patterns = SAFE_PATTERNS + (["*.bin"] if trust_checkpoint else [])
    try:
        return Path(snapshot_download(repo_id=model, revision=revision, allow_patterns=patterns))
    except Exception as exc:  # network, unknown repo, bad name: one line naming the key
        raise ConfigError("encoder.model", f"cannot fetch {model!r} from the Hugging Face hub "
                                           f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from exc


def folder_checksum(folder: Path, trust_checkpoint: bool) -> str:
    """One hash of every file loading reads (name and xxh3 of its bytes)."""
    suffixes = {".json", ".safetensors"} | ({".bin"} if trust_checkpoint else set())
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in suffixes)
    return stable_hash([[p.name, file_checksum(p)] for p in files], 32)


class SSLEncoder(SpeakerEncoder):
    name = "ssl"
    normalized = False

    def __init__(self, model: str | None = None, layer: int | str = "all", pooling: str = "mean",
                 chunk_s: float = 20.0, min_duration_s: float = 0.1, batch_size: int = 16,
                 revision: str | None = None, trust_checkpoint: bool = False, frontend=None,
                 device: str = "cpu") -> None:
        super().__init__(frontend, device)
        if not model:
            raise ConfigError("encoder.model", "encoder=ssl needs a model folder or hub name (encoder.model=...)")
        if pooling not in POOLINGS:
            raise ConfigError("encoder.pooling", f"{pooling!r} is not one of {POOLINGS}")
        if chunk_s <= 0:
            raise ConfigError("encoder.chunk_s", f"must be positive, got {chunk_s}")
        self.model_name, self.revision, self.trust_checkpoint = str(model), revision, bool(trust_checkpoint)
        self.pooling, self.chunk_s, self.min_duration_s = pooling, float(chunk_s), float(min_duration_s)
        self.batch_size = int(batch_size)
        self.folder = model_folder(self.model_name, revision, self.trust_checkpoint)
        self.checksum = folder_checksum(self.folder, self.trust_checkpoint)
        config = self._check_folder()
        self.n_states = int(config.num_hidden_layers) + 1
        self.hidden = int(config.hidden_size)
        self.layer = self._layer(layer)
        self.embedding_dim = self._dim()  # type: ignore[misc]
        # feature extractor and network, loaded on first use: a job whose rows all come from a
        # store (e.g. one layer read from the layer=all store) never loads the model; shared
        # (same dict) with all_layers()
        self._model: dict[str, Any] = {}

    def _check_folder(self) -> Any:
        """What can be refused before loading any weights: missing feature extractor, pickled
        weights without ``trust_checkpoint``, an unreadable config; returns the model's config."""
        from transformers import AutoConfig

        if not (self.folder / "preprocessor_config.json").is_file():
            raise DataError(self.folder / "preprocessor_config.json", "missing: the model's feature extractor "
                                                                       "(save it with the model: save_pretrained)")
        if not self.trust_checkpoint and not any(self.folder.glob("*.safetensors")):
            raise DataError(self.folder, "holds no .safetensors weights; pickled weights (.bin) can run code when "
                                         "loaded: encoder.trust_checkpoint=true loads them, for files you trust")
        try:
            return AutoConfig.from_pretrained(self.folder, trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise DataError(self.folder / "config.json", f"transformers cannot read this model's config: "
                                                         f"{' '.join(str(exc).split())[:300]}") from exc

    @property
    def model_loaded(self) -> bool:
        return bool(self._model)

    @property
    def extractor(self) -> Any:
        return self._loaded()["extractor"]

    @property
    def net(self) -> Any:
        return self._loaded()["net"]

    def _loaded(self) -> dict[str, Any]:
        if not self._model:
            self._model.update(self._load())
        return self._model

    def _load(self) -> dict[str, Any]:
        from transformers import AutoFeatureExtractor, AutoModel
        from transformers.utils import logging as hf_logging

        if progress_disabled():  # no loading bar in redirected logs (utils/progress.py's rule)
            hf_logging.disable_progress_bar()
        extractor = AutoFeatureExtractor.from_pretrained(self.folder, trust_remote_code=False)
        try:
            net = AutoModel.from_pretrained(self.folder, use_safetensors=None if self.trust_checkpoint else True,
                                            trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise DataError(self.folder, f"transformers cannot load this model: {' '.join(str(exc).split())[:300]}") from exc
        return {"extractor": extractor, "net": net.to(self.device).eval()}

    def _layer(self, layer: int | str) -> int | str:
        if layer == "all":
            return "all"
        try:
            k = int(layer)
        except (TypeError, ValueError):
            k = -1
        if not 0 <= k < self.n_states or isinstance(layer, bool):
            raise ConfigError("encoder.layer", f"{layer!r}: this model has hidden states 0..{self.n_states - 1}, or all")
        return k

    @property
    def block(self) -> int:
        """Width of one layer's pooled vector."""
        return self.hidden * (2 if self.pooling == "mean+std" else 1)

    def _dim(self) -> int:
        return self.block * (self.n_states if self.layer == "all" else 1)

    def layer_columns(self) -> slice | None:
        """This layer's columns in a ``layer=all`` row (None for ``layer=all`` itself)."""
        if self.layer == "all":
            return None
        return slice(int(self.layer) * self.block, (int(self.layer) + 1) * self.block)

    def all_layers(self) -> "SSLEncoder":
        """The same model with ``layer=all`` (the network is shared, not loaded again)."""
        other = copy.copy(self)
        other.layer = "all"
        other.embedding_dim = other._dim()  # type: ignore[misc]
        return other

    def _normalised(self, wavs: list[np.ndarray]) -> np.ndarray:
        """The model's own input normalisation (its feature extractor), per waveform."""
        out = self.extractor(wavs, sampling_rate=self.sample_rate, return_tensors="np")
        return np.asarray(out["input_values"], np.float32)

    def _stats(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """(B, n) model input -> per layer sums and squared sums over frames, (S, B, H) float64, and
        the frame count."""
        import torch

        dev = next(self.net.parameters()).device
        with torch.inference_mode():
            out = self.net(torch.from_numpy(values).to(dev), output_hidden_states=True)
        hs = torch.stack(out.hidden_states).double()  # (S, B, T, H)
        if self.layer != "all":
            hs = hs[int(self.layer):int(self.layer) + 1]
        return hs.sum(2).cpu().numpy(), (hs * hs).sum(2).cpu().numpy(), int(hs.shape[2])

    def _pool(self, total: np.ndarray, squares: np.ndarray, n: int) -> np.ndarray:
        """(S, B, H) sums -> (B, S * block) pooled rows, layer blocks in order."""
        mean = total / n
        parts = [mean]
        if self.pooling == "mean+std":
            parts.append(np.sqrt(np.maximum(squares / n - mean * mean, 0.0)))
        blocks = np.concatenate(parts, axis=2)  # (S, B, block)
        return blocks.transpose(1, 0, 2).reshape(blocks.shape[1], -1).astype(np.float32)

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        if windows.shape[1] < self.min_duration_s * self.sample_rate:
            return np.full((len(windows), self.embedding_dim), np.nan, np.float32)
        out = []
        for i in range(0, len(windows), self.batch_size):
            values = self._normalised(list(windows[i:i + self.batch_size]))
            out.append(self._pool(*self._stats(values)))
        return np.concatenate(out)

    def embed_utterance(self, wav: np.ndarray) -> np.ndarray | None:
        """Pooled over the whole utterance; input longer than ``chunk_s`` runs in equal chunks
        (each at most ``chunk_s``), pooled over all their frames."""
        if len(wav) < self.min_duration_s * self.sample_rate:
            return None
        values = self._normalised([wav])[0]
        n_chunks = max(1, math.ceil(len(values) / (self.chunk_s * self.sample_rate)))
        total = squares = None
        frames = 0
        for chunk in np.array_split(values, n_chunks):
            s, q, n = self._stats(chunk[None])
            total, squares = (s, q) if total is None else (total + s, squares + q)
            frames += n
        assert total is not None and squares is not None
        return self._pool(total, squares, frames)[0]

    def config(self) -> dict[str, Any]:
        return {**super().config(), "model": self.model_name, "revision": self.revision,
                "model_checksum": self.checksum, "layer": self.layer, "pooling": self.pooling,
                "chunk_s": self.chunk_s, "min_duration_s": self.min_duration_s}
