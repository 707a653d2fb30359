"""The encoder interface (built from ``conf/encoder/*.yaml`` by Hydra ``_target_``).

An encoder owns its :class:`AudioFrontend` (rate, level, VAD), states its embedding size,
embeds a batch of equal-length windows, and has its own utterance-level scheme
(``embed_utterance``) for ``window_s=null``. Adding an encoder = one class + one config file.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np

from deeptalk_ser.data.audio.frontend import AudioFrontend


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``: GPU paths select themselves."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class SpeakerEncoder(abc.ABC):
    name: ClassVar[str] = "encoder"
    embedding_dim: ClassVar[int]
    #: True if embeddings are L2-normalised per window (then the mean may be re-normalised).
    normalized: ClassVar[bool] = True

    def __init__(self, frontend: AudioFrontend | dict | None = None, device: str = "cpu") -> None:
        if frontend is None:
            frontend = AudioFrontend()
        elif not isinstance(frontend, AudioFrontend):
            frontend = AudioFrontend(**dict(frontend))
        self.frontend = frontend
        self.device = resolve_device(device)

    @property
    def sample_rate(self) -> int:
        return self.frontend.sample_rate

    @abc.abstractmethod
    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """(B, n_samples) float32 at ``sample_rate`` -> (B, embedding_dim) float32."""

    @abc.abstractmethod
    def embed_utterance(self, wav: np.ndarray) -> np.ndarray | None:
        """The encoder's own utterance-level embedding, or None if ``wav`` is too short for it."""

    def embed_windowed(self, wav: np.ndarray, window: int, hop: int, batch_size: int = 256) -> np.ndarray:
        """Embeddings of every full window (``window`` samples every ``hop``) of one utterance.

        The default slices and batches; encoders whose layers are shared between overlapping
        windows override this with an exact faster path.
        """
        n = 1 + (len(wav) - window) // hop
        if n <= 0:
            return np.zeros((0, self.embedding_dim), np.float32)
        frames = np.lib.stride_tricks.sliding_window_view(wav, window)[::hop][:n]
        out = [self.embed_windows(np.ascontiguousarray(frames[i:i + batch_size])) for i in range(0, n, batch_size)]
        return np.concatenate(out).astype(np.float32, copy=False)

    def config(self) -> dict[str, Any]:
        """What determines this encoder's output (part of the embedding store's cache key)."""
        return {"name": self.name, "frontend": self.frontend.describe()}
