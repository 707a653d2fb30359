"""Training data for speaker encoders: speaker-balanced batches of random fixed-length crops.

Utterances are read once through the encoder's front end (8 kHz, level, VAD) and framed
(160-sample Hamming frames, z-scored); each draw takes a random ``crop_frames`` crop, tiling
short utterances (the reference's ``random_partial``). Utterances with no usable frame after
VAD are skipped and counted at setup, never fed to the model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from deeptalk_ser.data.audio.framing import frame_signal, random_crop
from deeptalk_ser.data.audio.frontend import AudioFrontend
from deeptalk_ser.data.audio.io import load_audio
from deeptalk_ser.utils.errors import AudioError
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.training.sampler import SpeakerBatchSampler

log = logging.getLogger(__name__)


def load_frames(utt: Utterance, frontend: AudioFrontend) -> np.ndarray:
    wav, sr = load_audio(utt.path)
    return frame_signal(frontend(wav, sr))


@dataclass
class FrameBank:
    """Framed utterances held in memory (fine up to a few hours of audio; see README for scale)."""

    utts: list[Utterance]
    frames: list[np.ndarray]
    skipped: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def build(cls, utts: Sequence[Utterance], frontend: AudioFrontend, on_error: str = "raise") -> "FrameBank":
        kept, frames, skipped = [], [], []
        for u in utts:
            try:
                f = load_frames(u, frontend)
            except AudioError as exc:
                if on_error == "raise":
                    raise
                skipped.append({"id": u.id, "reason": exc.problem})
                continue
            if len(f) == 0:
                skipped.append({"id": u.id, "reason": "no voiced frame after VAD"})
                continue
            kept.append(u)
            frames.append(f)
        if skipped:
            log.warning("training data: skipped %d utterance(s), e.g. %s", len(skipped), skipped[:3])
        return cls(kept, frames, skipped)


class CropDataset(Dataset):
    """Index -> (crop (crop_frames, 160) float32, speaker index). The crop position is drawn
    from a generator seeded by (seed, draw counter, index) so that it does not depend on
    worker scheduling."""

    def __init__(self, bank: FrameBank, speaker_to_idx: dict[str, int], crop_frames: int, seed: int) -> None:
        self.bank, self.crop_frames, self.seed = bank, crop_frames, seed
        self.labels = np.array([speaker_to_idx[u.speaker] for u in bank.utts], dtype=np.int64)
        self.draws = 0

    def __len__(self) -> int:
        return len(self.bank.utts)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        self.draws += 1
        rng = np.random.default_rng([self.seed, i, self.draws])
        crop, _ = random_crop(self.bank.frames[i], self.crop_frames, rng)
        return torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32)), int(self.labels[i])


class UtteranceWaveDataset(Dataset):
    """Validation: index -> (utterance index, conditioned waveform) for whole-utterance embedding."""

    def __init__(self, utts: Sequence[Utterance], frontend: AudioFrontend) -> None:
        self.utts, self.frontend = list(utts), frontend

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray]:
        wav, sr = load_audio(self.utts[i].path)
        return i, self.frontend(wav, sr)


def _identity(x: Any) -> Any:
    return x


def split_speakers(utts: Sequence[Utterance], n_val: int, seed: int) -> tuple[list[Utterance], list[Utterance]]:
    """Hold out ``n_val`` whole speakers (seeded) for validation EER."""
    speakers = sorted({u.speaker for u in utts})
    if n_val >= len(speakers):
        raise ValueError(f"cannot hold out {n_val} of {len(speakers)} speakers for validation")
    val = set(np.random.default_rng(seed).choice(speakers, size=n_val, replace=False).tolist()) if n_val else set()
    return [u for u in utts if u.speaker not in val], [u for u in utts if u.speaker in val]


class SpeakerDataModule(L.LightningDataModule):
    def __init__(self, utts: Sequence[Utterance], frontend: AudioFrontend, speakers_per_batch: int,
                 utterances_per_speaker: int, crop_frames: int, batches_per_epoch: int, val_speakers: int,
                 seed: int = 0, num_workers: int = 0, on_error: str = "raise") -> None:
        super().__init__()
        self.all_utts, self.frontend = list(utts), frontend
        self.P, self.K, self.crop_frames = speakers_per_batch, utterances_per_speaker, crop_frames
        self.batches_per_epoch, self.val_speakers, self.seed = batches_per_epoch, val_speakers, seed
        self.num_workers, self.on_error = num_workers, on_error
        self.sampler: SpeakerBatchSampler | None = None
        self._pending_state: dict[str, Any] | None = None
        self._pending_draws = 0

    def setup(self, stage: str | None = None) -> None:
        if self.sampler is not None:
            return
        train_utts, self.val_utts = split_speakers(self.all_utts, self.val_speakers, self.seed)
        self.bank = FrameBank.build(train_utts, self.frontend, self.on_error)
        speakers = sorted({u.speaker for u in self.bank.utts})
        self.speaker_to_idx = {s: i for i, s in enumerate(speakers)}
        self.train_set = CropDataset(self.bank, self.speaker_to_idx, self.crop_frames, self.seed)
        self.sampler = SpeakerBatchSampler([u.speaker for u in self.bank.utts], self.P, self.K,
                                           num_batches=self.batches_per_epoch, seed=self.seed)
        if self._pending_state:
            self.sampler.load_state_dict(self._pending_state)
            self.train_set.draws = self._pending_draws
        log.info("training on %d utterances of %d speakers; validating on %d utterances of %d held-out speakers",
                 len(self.bank.utts), len(speakers), len(self.val_utts), len({u.speaker for u in self.val_utts}))

    def train_dataloader(self) -> DataLoader:
        assert self.sampler is not None
        return DataLoader(self.train_set, batch_sampler=self.sampler, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_utts:
            return []
        return DataLoader(UtteranceWaveDataset(self.val_utts, self.frontend), batch_size=None,
                          num_workers=self.num_workers, collate_fn=_identity)

    def state_dict(self) -> dict[str, Any]:
        # the crop counter seeds crop positions: saved so a resumed run draws the same crops
        # (exact with num_workers=0; worker processes keep their own counters)
        if self.sampler is None:
            return {}
        return {"sampler": self.sampler.state_dict(), "crop_draws": self.train_set.draws}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending_state = state.get("sampler")
        self._pending_draws = int(state.get("crop_draws", 0))
        if self.sampler is not None and self._pending_state:
            self.sampler.load_state_dict(self._pending_state)
            self.train_set.draws = self._pending_draws
