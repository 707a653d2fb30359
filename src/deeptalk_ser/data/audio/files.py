"""Audio file checks shared by every decoder: exists, non-empty, complete (WAV), which decoder
owns the suffix."""

from __future__ import annotations

import struct
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


#: data-chunk sizes that mean "unknown" (streamed writers, RF64 placeholders): not checkable
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)


def check_wav_complete(path: Path) -> None:
    """Refuse a RIFF/WAVE file whose ``data`` chunk promises more bytes than the file holds.

    libsndfile reads such a file as a shorter one (it trusts the file size), so a copy cut off
    by a full disk or an interrupted transfer would otherwise be embedded as if it were whole.
    Files that are not RIFF/WAVE, or that declare an unknown data size, are left to the decoder.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        offset = 12
        for _ in range(64):  # a WAV has a handful of chunks; stop on garbage rather than loop
            fh.seek(offset)
            chunk = fh.read(8)
            if len(chunk) < 8:
                raise AudioError(path, f"truncated: the WAV file ends after {size} bytes, before its data chunk")
            cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                if csize in _UNKNOWN_SIZES:
                    return
                held = size - offset - 8
                if csize > held:
                    raise AudioError(path, f"truncated: the WAV header promises {csize} data bytes, the file "
                                           f"holds {held} (an interrupted copy or a full disk?)")
                return
            offset += 8 + csize + (csize & 1)
