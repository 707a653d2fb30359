"""Audio file checks shared by every decoder: exists, non-empty, which decoder owns the suffix."""

from __future__ import annotations

from pathlib import Path

from deeptalk_ser.utils.errors import AudioError

M4A_SUFFIXES = (".m4a", ".mp4", ".aac")


def check_audio_file(path: str | Path) -> Path:
    """The path, if it names a non-empty file; else an AudioError saying which problem."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "audio file not found")
    if path.stat().st_size == 0:
        raise AudioError(path, "audio file is empty (0 bytes)")
    return path


def is_m4a(path: Path) -> bool:
    return path.suffix.lower() in M4A_SUFFIXES
