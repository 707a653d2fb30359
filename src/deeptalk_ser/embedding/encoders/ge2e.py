"""GE2E speaker encoder (Wan et al. 2018) with the pretrained weights shipped in the
``resemblyzer`` wheel (16 kHz, 40-band mel, 3x256 LSTM, 256-d ReLU + L2 embedding).

We read the wheel's ``pretrained.pt`` directly (found without importing resemblyzer, whose
import pulls deprecated SciPy modules) and rebuild the network and its mel front end here, so
nothing is downloaded at run time and every preprocessing step is explicit in our config.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deeptalk_ser.embedding.encoders.base import SpeakerEncoder

MEL_WINDOW_MS, MEL_HOP_MS, N_MELS = 25, 10, 40
PARTIAL_FRAMES = 160  # 1.6 s partial utterances


def resemblyzer_weights() -> Path:
    """Path of the pretrained GE2E weights inside the installed resemblyzer wheel."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "encoder=ge2e needs the resemblyzer wheel for its weights: pip install --no-deps resemblyzer==0.1.4"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "pretrained.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: resemblyzer is installed but its pretrained.pt is missing")
    return path


class GE2ENet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, 256)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-12)


class GE2EEncoder(SpeakerEncoder):
    name = "ge2e"
    embedding_dim = 256

    def __init__(self, frontend=None, device: str = "cpu", weights: str | None = None,
                 partials_per_s: float = 1.3, min_coverage: float = 0.75, batch_size: int = 64) -> None:
        super().__init__(frontend, device)
        if self.sample_rate != 16000:
            raise ValueError(f"GE2E was trained on 16 kHz mels; frontend.sample_rate is {self.sample_rate}")
        self.weights = str(weights or resemblyzer_weights())
        self.net = GE2ENet()
        state = torch.load(self.weights, map_location="cpu", weights_only=True)["model_state"]  # tensors only: no code runs
        # The GE2E loss scalars are training-only; every network weight must match exactly.
        state = {k: v for k, v in state.items() if not k.startswith("similarity_")}
        self.net.load_state_dict(state, strict=True)
        self.net.to(self.device).eval()
        self.partials_per_s, self.min_coverage, self.batch_size = partials_per_s, min_coverage, batch_size
        self._hop = self.sample_rate * MEL_HOP_MS // 1000
        self._mel_fb = None

    def mel(self, wav: np.ndarray) -> np.ndarray:
        """(T, 40) power mel spectrogram, as resemblyzer's ``wav_to_mel_spectrogram``."""
        import librosa

        n_fft = self.sample_rate * MEL_WINDOW_MS // 1000
        m = librosa.feature.melspectrogram(y=wav, sr=self.sample_rate, n_fft=n_fft, hop_length=self._hop, n_mels=N_MELS)
        return m.astype(np.float32).T

    @torch.inference_mode()
    def _forward(self, mels: np.ndarray) -> np.ndarray:
        out = [self.net(torch.from_numpy(mels[i:i + self.batch_size]).to(self.device)).cpu().numpy()
               for i in range(0, len(mels), self.batch_size)]
        return np.concatenate(out)

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        mels = np.stack([self.mel(w) for w in windows])
        return self._forward(mels)

    def partial_slices(self, n_samples: int) -> list[slice]:
        """Mel-frame slices of the 1.6 s partials (resemblyzer's ``compute_partial_slices``)."""
        n_frames = int(np.ceil((n_samples + 1) / self._hop))
        step = max(1, int(round((self.sample_rate / self.partials_per_s) / self._hop)))
        slices = [slice(i, i + PARTIAL_FRAMES) for i in range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step)]
        last = slices[-1]
        coverage = (n_samples - last.start * self._hop) / (PARTIAL_FRAMES * self._hop)
        if coverage < self.min_coverage and len(slices) > 1:
            slices = slices[:-1]
        return slices

    def embed_utterance(self, wav: np.ndarray) -> np.ndarray | None:
        """Mean of the partial embeddings, re-normalised; short input is zero-padded to one partial
        (resemblyzer's behaviour), so ``None`` only for empty input."""
        if len(wav) == 0:
            return None
        slices = self.partial_slices(len(wav))
        need = slices[-1].stop * self._hop
        if need >= len(wav):
            wav = np.pad(wav, (0, need - len(wav)))
        mel = self.mel(wav)
        partials = self._forward(np.stack([mel[s] for s in slices]))
        mean = partials.mean(axis=0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)

    def config(self) -> dict:
        return {**super().config(), "weights": Path(self.weights).name,
                "partials_per_s": self.partials_per_s, "min_coverage": self.min_coverage}
