"""Speaker encoders: one module per encoder, each a :class:`SpeakerEncoder`."""

from deeptalk_ser.embedding.encoders.base import SpeakerEncoder

__all__ = ["SpeakerEncoder"]
