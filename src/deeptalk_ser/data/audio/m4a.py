"""AAC-in-MP4 (``.m4a``, as VoxCeleb2 ships) via PyAV, which bundles FFmpeg.

libsndfile cannot read m4a, so :mod:`deeptalk_ser.data.audio.io` and :mod:`deeptalk_ser.data.prepare`
dispatch ``.m4a`` here. ``av`` is imported lazily: only corpora that ship m4a need it.

AAC encoders prepend priming samples and pad the last frame. FFmpeg's decoder drops the priming
(the container says how much); the padding is trimmed here to the duration that the container
declares, so the decoded length matches :func:`read_m4a_header` and the original recording.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deeptalk_ser.utils.errors import AudioError
from deeptalk_ser.utils.io import atomic_path
from deeptalk_ser.data.audio.files import check_audio_file

def _av() -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("reading .m4a needs PyAV: pip install av (it bundles FFmpeg)") from exc
    return av


def _declared_frames(container: Any, stream: Any) -> int | None:
    """Samples the container declares for the stream (edit list applied), None if it says nothing."""
    sr = stream.codec_context.sample_rate
    if stream.duration is not None and stream.time_base is not None:
        return int(round(float(stream.duration * stream.time_base) * sr))
    if container.duration is not None:  # in AV_TIME_BASE (microseconds)
        return int(round(container.duration / 1_000_000 * sr))
    return None


def read_m4a_header(path: str | Path) -> tuple[float, int]:
    """(duration in s, sample rate) from the container, without decoding any audio.

    Falls back to summing packet durations (demuxing only) when the container declares no
    duration, e.g. a fragmented MP4.
    """
    path = check_audio_file(path)
    av = _av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(path, "no audio stream in the file")
            stream = container.streams.audio[0]
            sr = int(stream.codec_context.sample_rate or 0)
            if sr <= 0:
                raise AudioError(path, "audio stream declares no sample rate")
            frames = _declared_frames(container, stream)
            if frames is None:
                ticks = sum(p.duration or 0 for p in container.demux(stream))
                frames = int(round(float(ticks * stream.time_base) * sr))
    except av.FFmpegError as exc:
        raise AudioError(path, f"unreadable m4a header ({exc})") from exc
    if frames <= 0:
        raise AudioError(path, "audio file holds no samples")
    return frames / sr, sr


def decode_m4a(path: str | Path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decode the first audio stream to (mono float32 waveform in [-1, 1], sample rate).

    Channels are averaged, as :func:`deeptalk_ser.data.audio.io.load_audio` does for WAV. With
    ``sample_rate`` the result is resampled with soxr (the project's resampler) so converted and
    on-the-fly audio are identical.
    """
    path = check_audio_file(path)
    av = _av()
    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(path, "no audio stream in the file")
            stream = container.streams.audio[0]
            sr = int(stream.codec_context.sample_rate)
            declared = _declared_frames(container, stream)
            # Planar float whatever the decoder emits: to_ndarray() is then (channels, samples).
            resampler = av.AudioResampler(format="fltp")
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
    except av.FFmpegError as exc:
        raise AudioError(path, f"cannot decode m4a ({exc})") from exc
    if not chunks:
        raise AudioError(path, "audio file holds no samples")
    wav = np.concatenate(chunks, axis=1)
    mono = wav.mean(axis=0) if wav.shape[0] > 1 else wav[0]
    if declared is not None and 0 < declared < mono.shape[0]:
        mono = mono[:declared]  # drop the encoder's end padding
    if not np.all(np.isfinite(mono)):
        raise AudioError(path, "audio holds NaN or inf samples")
    if sample_rate is not None and sample_rate != sr:
        import soxr

        mono = soxr.resample(mono, sr, sample_rate)
        sr = sample_rate
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)


def convert_m4a_to_wav(src: str | Path, dst: str | Path, sample_rate: int = 16000) -> None:
    """Write ``src`` as mono PCM16 WAV at ``sample_rate`` (what ``ffmpeg -ac 1 -ar 16000
    -acodec pcm_s16le`` gives). Atomic: ``dst`` appears only complete, so a rerun after a
    crash can trust that every existing ``dst`` is finished."""
    import soundfile as sf

    wav, sr = decode_m4a(src, sample_rate=sample_rate)
    with atomic_path(dst) as tmp:
        sf.write(str(tmp), np.clip(wav, -1.0, 1.0), sr, subtype="PCM_16", format="WAV")
