"""Audio I/O and the explicit signal front end (resampling, level, voice activity)."""

from .frontend import AudioFrontend, VADConfig
from .io import load_audio

__all__ = ["AudioFrontend", "VADConfig", "load_audio"]
