"""Kaldi-compatible log-mel filterbanks, computed by ``kaldi-native-fbank``, for encoders that
were trained on them (``encoder=onnx_speaker``: WeSpeaker, 3D-Speaker).

Published speaker models only work on the features their recipe fed them, so every option that
changes the numbers is a config key (and part of the store key). Defaults are WeSpeaker's
(``wespeaker/bin/infer_onnx.py``): 80 bins, 25 ms / 10 ms, dither 0, Hamming window, samples
scaled to the int16 range, mean normalisation over the input (CMN, no variance normalisation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from deeptalk_ser.utils.errors import ConfigError

WINDOW_TYPES = ("hamming", "povey", "hanning", "rectangular", "blackman")


@dataclass(frozen=True)
class KaldiFbank:
    """Options of Kaldi's ``compute-fbank-feats`` (the names of ``torchaudio.compliance.kaldi.fbank``)
    plus ``scale`` (samples are multiplied by it first) and ``cmn`` (subtract the mean over frames)."""

    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    dither: float = 0.0
    window_type: str = "hamming"
    preemphasis: float = 0.97
    remove_dc_offset: bool = True
    low_freq: float = 20.0
    high_freq: float = 0.0
    snip_edges: bool = True
    scale: float = 32768.0
    cmn: bool = True

    def __post_init__(self) -> None:
        if self.window_type not in WINDOW_TYPES:
            raise ConfigError("encoder.fbank.window_type", f"{self.window_type!r} is not one of {WINDOW_TYPES}")
        if self.num_mel_bins <= 0 or self.frame_length_ms <= 0 or self.frame_shift_ms <= 0:
            raise ConfigError("encoder.fbank", "num_mel_bins, frame_length_ms and frame_shift_ms must be positive")

    def options(self, sample_rate: int):  # -> kaldi_native_fbank.FbankOptions
        import kaldi_native_fbank as knf

        opts = knf.FbankOptions()
        f = opts.frame_opts
        f.samp_freq = float(sample_rate)
        f.frame_length_ms, f.frame_shift_ms = float(self.frame_length_ms), float(self.frame_shift_ms)
        f.dither, f.window_type, f.preemph_coeff = float(self.dither), self.window_type, float(self.preemphasis)
        f.remove_dc_offset, f.snip_edges = bool(self.remove_dc_offset), bool(self.snip_edges)
        m = opts.mel_opts
        m.num_bins, m.low_freq, m.high_freq = int(self.num_mel_bins), float(self.low_freq), float(self.high_freq)
        opts.use_energy = False
        return opts

    def min_samples(self, sample_rate: int) -> int:
        """Samples of one frame: shorter input has no frame (with ``snip_edges``)."""
        return round(self.frame_length_ms * sample_rate / 1000)

    def __call__(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """(T, num_mel_bins) float32 log-mel energies of ``wav`` (T may be 0)."""
        import kaldi_native_fbank as knf

        fb = knf.OnlineFbank(self.options(sample_rate))
        fb.accept_waveform(float(sample_rate), np.asarray(wav, np.float32) * np.float32(self.scale))
        fb.input_finished()
        n = fb.num_frames_ready
        if n == 0:
            return np.zeros((0, self.num_mel_bins), np.float32)
        feats = np.stack([np.asarray(fb.get_frame(i), np.float32) for i in range(n)])
        if self.cmn:
            feats -= feats.mean(axis=0, keepdims=True)
        return feats

    def describe(self) -> dict:
        return {"library": "kaldi-native-fbank", **asdict(self)}
