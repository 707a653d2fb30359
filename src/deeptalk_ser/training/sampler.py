"""Speaker-balanced P x K batches for metric-learning losses (GE2E, triplet, prototypical).

These losses need several utterances of each of several speakers in every batch, which a
shuffled sampler does not guarantee, so batches are built here instead.

Use with Lightning::

    sampler = SpeakerBatchSampler(speakers, speakers_per_batch=64, utterances_per_speaker=10,
                                  num_batches=1000, seed=cfg.seed)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=8)
    trainer = Trainer(..., use_distributed_sampler=False)

``use_distributed_sampler=False`` is required: with the default ``True`` Lightning tries to
rebuild the DataLoader around a ``DistributedSampler`` under DDP, which either fails on this
custom batch sampler or discards the speaker balancing. Distribution is handled here: each
rank builds its own ``num_batches`` batches from its own random stream, so all ranks run
the same number of steps (no DDP hang) and see different batches.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler


class _EpochRelay:
    """Exposed as ``batch_sampler.sampler``: Lightning calls ``set_epoch`` on that attribute
    (never on the batch sampler itself) at the start of every epoch, so this forwards it."""

    def __init__(self, owner: "SpeakerBatchSampler") -> None:
        self._owner = owner

    def set_epoch(self, epoch: int) -> None:
        self._owner.set_epoch(epoch)


class SpeakerBatchSampler(Sampler[list[int]]):
    """Yields ``num_batches`` batches per epoch of P distinct speakers x K utterances each.

    Layout: ``batch[i*K:(i+1)*K]`` are dataset indices of the i-th speaker, so the loss can
    reshape the embeddings to ``(P, K, dim)``.

    Sampling: speakers are taken in rounds from a shuffled list, so each speaker appears
    about equally often per epoch (never twice within a batch); the K utterances of a
    speaker are drawn without replacement. A speaker with fewer than K utterances is kept
    and padded *with replacement*: all its utterances once, the rest drawn uniformly from
    them (so a batch can hold duplicates), unless ``drop_short_speakers`` removes it.

    Randomness: one ``numpy`` generator per epoch seeded by ``(seed, epoch, rank)``, so runs
    are reproducible, ``set_epoch`` changes the draw and ranks differ. ``rank`` and
    ``world_size`` default to ``torch.distributed`` when initialised, else ``(0, 1)``.
    Ranks draw independently (batches are not partitioned between ranks); ``num_batches``
    counts batches per rank.

    Resuming: ``state_dict()`` holds ``epoch`` and ``batches_yielded`` in that epoch;
    after ``load_state_dict`` the next iteration continues with the batch an uninterrupted
    run would have produced next. Lightning does not checkpoint batch samplers, so save the
    state yourself (e.g. ``on_save_checkpoint``). With ``num_workers > 0`` the DataLoader
    prefetches, so the sampler's own count runs ahead of the training step; for an exact
    resume store the number of batches the trainer actually consumed as ``batches_yielded``.
    """

    def __init__(
        self,
        speakers: Sequence[str],
        speakers_per_batch: int,
        utterances_per_speaker: int,
        num_batches: int,
        seed: int,
        rank: int | None = None,
        world_size: int | None = None,
        drop_short_speakers: bool = False,
    ) -> None:
        for name, value in (
            ("speakers_per_batch", speakers_per_batch),
            ("utterances_per_speaker", utterances_per_speaker),
            ("num_batches", num_batches),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if rank is None or world_size is None:
            initialised = dist.is_available() and dist.is_initialized()
            if rank is None:
                rank = dist.get_rank() if initialised else 0
            if world_size is None:
                world_size = dist.get_world_size() if initialised else 1
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")

        self.speakers_per_batch = int(speakers_per_batch)
        self.utterances_per_speaker = int(utterances_per_speaker)
        self.num_batches = int(num_batches)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.drop_short_speakers = drop_short_speakers

        groups: dict[str, list[int]] = {}
        for i, s in enumerate(speakers):
            groups.setdefault(str(s), []).append(i)
        k = self.utterances_per_speaker
        names = sorted(groups)  # sorted: the draw must not depend on dict/dataset order quirks
        self.short_speakers = tuple(s for s in names if len(groups[s]) < k)
        if drop_short_speakers:
            names = [s for s in names if len(groups[s]) >= k]
        if len(names) < self.speakers_per_batch:
            dropped = ""
            if drop_short_speakers:
                dropped = f" after dropping {len(self.short_speakers)} with < {k} utterances"
            raise ValueError(
                f"{len(names)} speaker(s){dropped}, but speakers_per_batch="
                f"{self.speakers_per_batch} needs at least that many distinct speakers"
            )
        self.speaker_names = tuple(names)
        self._pools = [np.asarray(groups[s], dtype=np.int64) for s in names]

        self.epoch = 0
        self._yielded = 0  # batches handed out in the current epoch
        self._resume_from = 0  # batches to skip at the next __iter__ (set by load_state_dict)
        self.sampler = _EpochRelay(self)

    def __len__(self) -> int:
        return self.num_batches

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's random stream. Re-setting the current epoch keeps a loaded
        resume position (Lightning calls this again right after restoring a checkpoint)."""
        if int(epoch) != epoch or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        if epoch != self.epoch:
            self._resume_from = 0
            self._yielded = 0
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        start, self._resume_from = self._resume_from, 0
        self._yielded = start
        rng = np.random.default_rng([self.seed, self.epoch, self.rank])
        queue: list[int] = []
        for b in range(self.num_batches):
            batch = self._draw_batch(rng, queue)  # drawn even when skipped: keeps the stream exact
            if b < start:
                continue
            self._yielded = b + 1
            yield batch

    def _draw_batch(self, rng: np.random.Generator, queue: list[int]) -> list[int]:
        p, k = self.speakers_per_batch, self.utterances_per_speaker
        chosen = queue[:p]
        del queue[:p]
        if len(chosen) < p:  # round exhausted: start a new shuffled round, avoiding repeats
            taken = set(chosen)
            fresh = rng.permutation(len(self._pools)).tolist()
            extra = [s for s in fresh if s not in taken][: p - len(chosen)]
            used = set(extra)
            queue[:] = [s for s in fresh if s not in used]
            chosen += extra
        parts = []
        for s in chosen:
            pool = self._pools[s]
            if len(pool) >= k:
                parts.append(pool[rng.choice(len(pool), size=k, replace=False)])
            else:
                pad = pool[rng.integers(0, len(pool), size=k - len(pool))]
                parts.append(rng.permutation(np.concatenate([pool, pad])))
        return np.concatenate(parts).tolist()

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_yielded": self._yielded}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        epoch, done = int(state["epoch"]), int(state["batches_yielded"])
        if epoch < 0 or not 0 <= done <= self.num_batches:
            raise ValueError(
                f"invalid sampler state {state!r} for num_batches={self.num_batches}"
            )
        self.epoch = epoch
        self._yielded = done
        self._resume_from = done
