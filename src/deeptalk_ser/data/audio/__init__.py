"""Audio I/O and the explicit signal front end (resampling, level, voice activity)."""

from deeptalk_ser.data.audio.frontend import AudioFrontend, VADConfig
from deeptalk_ser.data.audio.io import load_audio

__all__ = ["AudioFrontend", "VADConfig", "load_audio"]
