"""``encoder=onnx_speaker``: any speaker-embedding network exported to ONNX (WeSpeaker ResNet /
ECAPA, 3D-Speaker CAM++ / ERes2Net publish such files), run by onnxruntime on the Kaldi
filterbanks its recipe expects (:mod:`.fbank`).

The file is data: onnxruntime runs its graph, nothing in it is imported or unpickled. Its input
and output names are read from the file; the network takes (batch, frames, bins) and returns
(batch, dim). The store key holds the file's checksum, so a replaced file is re-embedded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deeptalk_ser.embedding.encoders.base import SpeakerEncoder
from deeptalk_ser.embedding.encoders.fbank import KaldiFbank
from deeptalk_ser.utils.errors import ConfigError, DataError
from deeptalk_ser.utils.io import file_checksum


def onnx_providers(device: str) -> list[str]:
    """CUDA first when the device is a GPU and this onnxruntime build has it, CPU always."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    cuda = str(device).startswith("cuda") and "CUDAExecutionProvider" in have
    return (["CUDAExecutionProvider"] if cuda else []) + ["CPUExecutionProvider"]


class OnnxSpeakerEncoder(SpeakerEncoder):
    name = "onnx_speaker"
    normalized = False  # published models return raw embeddings (cosine scoring normalises)

    def __init__(self, model: str | None = None, frontend=None, device: str = "cpu",
                 fbank: KaldiFbank | dict | None = None, output: str | None = None,
                 min_frames: int = 10, batch_size: int = 64, threads: int | None = None) -> None:
        super().__init__(frontend, device)
        if not model:
            raise ConfigError("encoder.model", "encoder=onnx_speaker needs the path of an .onnx file "
                                               "(encoder.model=/path/to/model.onnx)")
        path = Path(model)
        if not path.is_file():
            raise DataError(path, "ONNX model file not found (encoder.model)")
        self.model_path, self.checksum = path, file_checksum(path)
        self.fbank = fbank if isinstance(fbank, KaldiFbank) else KaldiFbank(**dict(fbank or {}))
        self.min_frames, self.batch_size = int(min_frames), int(batch_size)
        self.session = self._session(path, threads)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise DataError(path, f"a speaker model takes one input (features); this one takes "
                                  f"{[i.name for i in inputs]}")
        self.input_name = inputs[0].name
        names = [o.name for o in self.session.get_outputs()]
        if output is not None and output not in names:
            raise ConfigError("encoder.output", f"{output!r} is not an output of {path} ({names})")
        self.output_name = output or names[0]
        fixed_batch = inputs[0].shape[0] if inputs[0].shape else None
        self.one_at_a_time = isinstance(fixed_batch, int) and fixed_batch == 1
        self.embedding_dim = self._probe_dim()  # type: ignore[misc]

    def _session(self, path: Path, threads: int | None):  # -> onnxruntime.InferenceSession
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            return ort.InferenceSession(str(path), sess_options=opts, providers=onnx_providers(self.device))
        except Exception as exc:  # onnxruntime raises its own types for a malformed graph
            raise DataError(path, f"onnxruntime cannot load this model: {' '.join(str(exc).split())[:300]}") from exc

    def _probe_dim(self) -> int:
        """The embedding size: the output's last axis, or one run on silence when it is symbolic."""
        out = next(o for o in self.session.get_outputs() if o.name == self.output_name)
        if out.shape and isinstance(out.shape[-1], int):
            return int(out.shape[-1])
        feats = np.zeros((1, max(self.min_frames, 1), self.fbank.num_mel_bins), np.float32)
        return int(self._run(feats).shape[-1])

    def _run(self, feats: np.ndarray) -> np.ndarray:
        out = self.session.run([self.output_name], {self.input_name: feats})[0]
        return np.asarray(out, np.float32).reshape(len(feats), -1)

    def features(self, wav: np.ndarray) -> np.ndarray:
        return self.fbank(wav, self.sample_rate)

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        feats = np.stack([self.features(w) for w in windows])
        if feats.shape[1] < self.min_frames:
            return np.full((len(windows), self.embedding_dim), np.nan, np.float32)
        step = 1 if self.one_at_a_time else self.batch_size
        return np.concatenate([self._run(feats[i:i + step]) for i in range(0, len(feats), step)])

    def embed_utterance(self, wav: np.ndarray) -> np.ndarray | None:
        feats = self.features(wav)
        if len(feats) < self.min_frames:
            return None
        return self._run(feats[None])[0]

    def config(self) -> dict[str, Any]:
        return {**super().config(), "model": self.model_path.name, "model_checksum": self.checksum,
                "input": self.input_name, "output": self.output_name, "fbank": self.fbank.describe(),
                "min_frames": self.min_frames}
