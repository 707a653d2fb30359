"""Speaker (and baseline) encoders behind one small interface, found by name in a registry."""

from .base import ENCODERS, SpeakerEncoder, build_encoder, register_encoder

__all__ = ["ENCODERS", "SpeakerEncoder", "build_encoder", "register_encoder"]
