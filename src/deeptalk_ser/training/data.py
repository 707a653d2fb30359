"""Training data for speaker encoders: speaker-balanced batches of random fixed-length crops,
streamed from the on-disk training store (``training/crop_store.py``).

The store holds every training utterance after the encoder's front end (8 kHz, level, VAD) as
int16; a crop is framed on the fly (160-sample Hamming frames, z-scored) from the samples it
needs, tiling short utterances (the reference's ``random_partial``). Utterances with no usable
frame are skipped and listed in the store's meta, never fed to the model. A rank holds only the
store's index, never the audio.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from deeptalk_ser.data.audio.frontend import AudioFrontend
from deeptalk_ser.data.audio.io import load_audio
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.training.augment import CropAugment
from deeptalk_ser.training.crop_store import CropStore, StoreReport, prepare_store
from deeptalk_ser.training.sampler import SpeakerBatchSampler
from deeptalk_ser.utils.errors import ConfigError
from deeptalk_ser.utils.processes import worker_init

log = logging.getLogger(__name__)


class StoreCropDataset(Dataset):
    """``(utterance index, crop seed) -> (crop (crop_frames, 160) float32, speaker index)``.

    The crop is ``random_crop(frames, crop_frames, default_rng(crop_seed))`` of the utterance's
    frames (see :meth:`CropStore.crop`): a pure function of the item, so batches do not depend
    on worker scheduling or on how many batches a worker drew before. Pickles as the store path
    (no audio, no index arrays). ``augment`` perturbs the crop's samples (``training/augment.py``)
    with draws from the same generator."""

    def __init__(self, store: CropStore, crop_frames: int, augment: CropAugment | None = None) -> None:
        self.store, self.crop_frames, self.augment = store, int(crop_frames), augment

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        i, crop_seed = item
        crop = self.store.crop(int(i), self.crop_frames, np.random.default_rng(crop_seed), self.augment)
        return torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32)), int(self.store.labels[i])


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
        raise ConfigError("training.val_speakers", f"cannot hold out {n_val} of {len(speakers)} speakers for validation "
                                                "(some must stay for training)")
    val = set(np.random.default_rng(seed).choice(speakers, size=n_val, replace=False).tolist()) if n_val else set()
    return [u for u in utts if u.speaker not in val], [u for u in utts if u.speaker in val]


class SpeakerDataModule(L.LightningDataModule):
    """P x K crops from the training store; whole held-out-speaker utterances for validation.

    Built by ``train.py`` from the ``datamodule`` node of ``conf/train.yaml`` (a partial: the
    utterances and the front end come from the run), so every loader and store setting is
    given: none has a default here that could disagree with the YAML. ``store_dir`` is
    ``train_store.dir``; :meth:`prepare_store` builds or opens the store there (call it before
    ``trainer.fit``; ``setup`` calls it otherwise). Rank and world size come from the attached
    trainer (``rank``/``world_size`` override them, for use without a trainer). ``state_dict``
    saves the batches the trainer consumed, so resume is exact with any ``num_workers``. An
    ``augment`` whose probabilities are all 0 is no augmentation (the clean crops, unchanged)."""

    def __init__(self, utts: Sequence[Utterance], frontend: AudioFrontend, *, speakers_per_batch: int,
                 utterances_per_speaker: int, crop_frames: int, batches_per_epoch: int, val_speakers: int,
                 store_dir: str | Path, seed: int, num_workers: int, pin_memory: bool, persistent_workers: bool,
                 prefetch_factor: int | None, on_error: str, shard_size: int, prepare_workers: int,
                 augment: CropAugment | None, rank: int | None = None, world_size: int | None = None) -> None:
        super().__init__()
        self.all_utts, self.frontend = list(utts), frontend
        self.P, self.K, self.crop_frames = speakers_per_batch, utterances_per_speaker, crop_frames
        self.batches_per_epoch, self.val_speakers, self.seed = batches_per_epoch, val_speakers, seed
        self.num_workers, self.pin_memory = int(num_workers), bool(pin_memory)
        self.persistent_workers, self.prefetch_factor = bool(persistent_workers), prefetch_factor
        self.on_error, self.store_dir = on_error, Path(store_dir)
        self.shard_size, self.prepare_workers = shard_size, prepare_workers
        self._rank, self._world_size = rank, world_size
        self.augment = augment if augment is not None and augment.active else None
        self.store: CropStore | None = None
        self.report: StoreReport | None = None
        self.sampler: SpeakerBatchSampler | None = None
        self._pending_state: dict[str, Any] | None = None
        self._consumed = 0  # training batches the trainer took, all epochs: the resume position

    # -- the store -----------------------------------------------------------------------------

    def prepare_store(self) -> StoreReport:
        """Split off the validation speakers and build (or reuse) the store of the rest.
        Idempotent; safe in every DDP process at once (one builds, the others wait and reuse)."""
        if self.report is None:
            train_utts, self.val_utts = split_speakers(self.all_utts, self.val_speakers, self.seed)
            self.report = prepare_store(train_utts, self.frontend, self.store_dir, shard_size=self.shard_size,
                                        num_workers=self.prepare_workers, on_error=self.on_error)
            self.store = CropStore(self.report.path)
            log.info("training store %s (%s): %d utterances of %d speakers, %d skipped; validating on %d "
                     "utterances of %d held-out speakers", self.report.path, "reused" if self.report.reused
                     else "built", self.report.n_utterances, self.report.n_speakers, len(self.report.skipped),
                     len(self.val_utts), len({u.speaker for u in self.val_utts}))
        return self.report

    @property
    def speakers(self) -> list[str]:
        assert self.store is not None
        return self.store.speakers

    def _rank_world(self) -> tuple[int, int]:
        trainer = self._trainer_or_none()
        rank = self._rank if self._rank is not None else (trainer.global_rank if trainer else 0)
        world = self._world_size if self._world_size is not None else (trainer.world_size if trainer else 1)
        return int(rank), int(world)

    def _trainer_or_none(self) -> Any:
        return getattr(self, "trainer", None)

    # -- Lightning hooks -------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        if self.sampler is not None:
            return
        self.prepare_store()
        assert self.store is not None
        rank, world = self._rank_world()
        self.train_set = StoreCropDataset(self.store, self.crop_frames, self.augment)
        self.sampler = SpeakerBatchSampler(np.asarray(self.store.labels), self.P, self.K,
                                           num_batches=self.batches_per_epoch, seed=self.seed,
                                           rank=rank, world_size=world, position=self._position)
        if self._pending_state:
            self._apply_state(self._pending_state)

    def _position(self) -> tuple[int, int] | None:
        """(epoch of the batch stream, batches done in it) from the batches the trainer consumed;
        None without a trainer (the sampler then follows set_epoch / load_state_dict)."""
        if self._trainer_or_none() is None:
            return None
        e, b = divmod(self._consumed, self.batches_per_epoch)
        return e, b

    def _loader_kwargs(self) -> dict[str, Any]:
        workers = self.num_workers
        return {"num_workers": workers, "pin_memory": self.pin_memory,
                "persistent_workers": self.persistent_workers and workers > 0,
                "prefetch_factor": self.prefetch_factor if workers > 0 else None,
                "worker_init_fn": worker_init if workers > 0 else None}  # workers die with the run

    def train_dataloader(self) -> DataLoader:
        assert self.sampler is not None
        return DataLoader(self.train_set, batch_sampler=self.sampler, **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_utts:
            return []
        return DataLoader(UtteranceWaveDataset(self.val_utts, self.frontend), batch_size=None,
                          num_workers=self.num_workers, collate_fn=_identity,
                          worker_init_fn=worker_init if self.num_workers else None)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # called by the training loop once per batch it actually trains on (after the fetcher's
        # and the workers' prefetch, unlike the sampler's own count): the exact resume position
        trainer = self._trainer_or_none()
        if trainer is not None and trainer.training:
            self._consumed += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        if self.sampler is None:
            return {}
        epoch, done = divmod(self._consumed, self.batches_per_epoch)
        return {"sampler": {"epoch": epoch, "batches_yielded": done}, "batches_consumed": self._consumed,
                "store": str(self.report.path if self.report else "")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending_state = state
        if self.sampler is not None and state:
            self._apply_state(state)

    def _apply_state(self, state: dict[str, Any]) -> None:
        assert self.sampler is not None
        sampler_state = state.get("sampler")
        if "batches_consumed" in state:
            self._consumed = int(state["batches_consumed"])
        elif sampler_state:  # older checkpoints: the sampler's own position
            self._consumed = int(sampler_state["epoch"]) * self.batches_per_epoch + int(sampler_state["batches_yielded"])
        e, b = divmod(self._consumed, self.batches_per_epoch)
        self.sampler.load_state_dict({"epoch": e, "batches_yielded": b})
