"""The encoder interface and registry (WeSpeaker-style: a name -> class table).

An encoder owns its :class:`AudioFrontend` (rate, level, VAD), states its embedding size,
embeds a batch of equal-length windows, and has its own utterance-level scheme
(``embed_utterance``) for ``window_s=null``. Adding an encoder = one class + one config file.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, ClassVar

import numpy as np

from ..audio.frontend import AudioFrontend

ENCODERS: dict[str, type["SpeakerEncoder"]] = {}


def register_encoder(name: str) -> Callable[[type["SpeakerEncoder"]], type["SpeakerEncoder"]]:
    def deco(cls: type[SpeakerEncoder]) -> type[SpeakerEncoder]:
        if name in ENCODERS:
            raise ValueError(f"encoder {name!r} registered twice")
        cls.name = name
        ENCODERS[name] = cls
        return cls

    return deco


def _import_builtin() -> None:
    import importlib

    for mod in ("ge2e", "egemaps", "deeptalk"):
        try:
            importlib.import_module(f"{__package__}.{mod}")
        except ModuleNotFoundError as exc:  # an encoder module not written yet must not break the others
            if exc.name != f"{__package__}.{mod}":
                raise


def build_encoder(name: str, **kwargs: Any) -> "SpeakerEncoder":
    _import_builtin()
    try:
        cls = ENCODERS[name]
    except KeyError:
        raise KeyError(f"unknown encoder {name!r}; known: {sorted(ENCODERS)}") from None
    return cls(**kwargs)


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
