"""Speaker-balanced P x K batches for metric-learning losses (GE2E, triplet, prototypical).

These losses need several utterances of each of several speakers in every batch, which a
shuffled sampler does not guarantee, so batches are built here instead.

Use with Lightning::

    sampler = SpeakerBatchSampler(labels, speakers_per_batch=64, utterances_per_speaker=10,
                                  num_batches=1000, seed=cfg.seed, rank=trainer.global_rank,
                                  world_size=trainer.world_size)
    loader = DataLoader(crop_dataset, batch_sampler=sampler, num_workers=8)
    trainer = Trainer(..., use_distributed_sampler=False)

``use_distributed_sampler=False`` is required: with the default ``True`` Lightning tries to
rebuild the DataLoader around a ``DistributedSampler`` under DDP, which either fails on this
custom batch sampler or discards the speaker balancing. Distribution is handled here: one
global stream of batches per epoch, partitioned between ranks (see the class docstring).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

#: Separates the crop-seed stream from the batch stream of the same (seed, epoch).
_CROP_STREAM = 0x5EED


class _EpochRelay:
    """Exposed as ``batch_sampler.sampler``: Lightning calls ``set_epoch`` on that attribute
    (never on the batch sampler itself) at the start of every epoch, so this forwards it."""

    def __init__(self, owner: "SpeakerBatchSampler") -> None:
        self._owner = owner

    def set_epoch(self, epoch: int) -> None:
        self._owner.set_epoch(epoch)


def crop_seeds(seed: int, epoch: int, global_batch: int, n: int) -> list[int]:
    """The crop seed of every slot of one global batch: a function of (seed, epoch, global batch
    index, slot) only, never of a counter in a worker, so a resumed run (any ``num_workers``)
    crops exactly as the uninterrupted one."""
    ss = np.random.SeedSequence([seed, _CROP_STREAM, epoch, global_batch])
    return [int(s) for s in ss.generate_state(n, dtype=np.uint64)]


class SpeakerBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields ``num_batches`` batches per epoch (per rank) of P distinct speakers x K utterances.

    Items are ``(dataset index, crop seed)`` pairs: the dataset derives the crop position from the
    seed (:func:`crop_seeds`). Layout: ``batch[i*K:(i+1)*K]`` belong to the i-th speaker, so the
    loss can reshape the embeddings to ``(P, K, dim)``.

    Sampling: speakers are taken in rounds from a shuffled list, so each speaker appears about
    equally often per epoch (never twice within a batch); the K utterances of a speaker are drawn
    without replacement. A speaker with fewer than K utterances is kept and padded *with
    replacement* (all its utterances once, the rest drawn uniformly from them), unless
    ``drop_short_speakers`` removes it.

    Ranks: one global stream of ``num_batches * world_size`` batches per epoch is drawn from
    ``(seed, epoch)``; rank ``r`` takes global batches ``b * world_size + r``. The
    ``world_size`` batches of one step are drawn together from the speaker round, so when
    ``P * world_size <= n_speakers`` concurrent ranks never share a speaker (otherwise they may,
    but each batch still has P distinct speakers). All ranks run ``num_batches`` steps (no DDP
    hang). ``rank`` and ``world_size`` are passed in (the datamodule takes them from its trainer).

    Resuming: ``state_dict()`` holds ``epoch`` and ``batches_yielded`` in that epoch; after
    ``load_state_dict`` the next iteration continues with the batch an uninterrupted run would
    have produced next. With ``num_workers > 0`` the DataLoader prefetches, so this sampler's own
    count runs ahead of training: the datamodule saves the number of batches the *trainer*
    consumed instead (``SpeakerDataModule.state_dict``). ``position``, when given, is asked at
    every ``__iter__`` for ``(epoch, batches done)`` and overrides ``set_epoch`` and the loaded
    state when it returns a pair: the datamodule derives it from the batches its trainer trained
    on, because Lightning's epoch numbers skip one when resuming from an end-of-epoch checkpoint.
    """

    def __init__(
        self,
        speakers: Sequence[Any] | np.ndarray,
        speakers_per_batch: int,
        utterances_per_speaker: int,
        num_batches: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        drop_short_speakers: bool = False,
        position: Callable[[], tuple[int, int] | None] | None = None,
    ) -> None:
        for name, value in (
            ("speakers_per_batch", speakers_per_batch),
            ("utterances_per_speaker", utterances_per_speaker),
            ("num_batches", num_batches),
            ("world_size", world_size),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")

        self.speakers_per_batch = int(speakers_per_batch)
        self.utterances_per_speaker = int(utterances_per_speaker)
        self.num_batches = int(num_batches)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.drop_short_speakers = drop_short_speakers
        self.position = position

        names, pools = _group(speakers)  # sorted: the draw must not depend on dataset order quirks
        k = self.utterances_per_speaker
        self.short_speakers = tuple(s for s, p in zip(names, pools) if len(p) < k)
        if drop_short_speakers:
            keep = [j for j, p in enumerate(pools) if len(p) >= k]
            names, pools = [names[j] for j in keep], [pools[j] for j in keep]
        if len(names) < self.speakers_per_batch:
            dropped = ""
            if drop_short_speakers:
                dropped = f" after dropping {len(self.short_speakers)} with < {k} utterances"
            raise ValueError(
                f"{len(names)} speaker(s){dropped}, but speakers_per_batch="
                f"{self.speakers_per_batch} needs at least that many distinct speakers"
            )
        self.speaker_names = tuple(names)
        self._pools = pools
        # speakers drawn at once from a round: a whole step of all ranks when there are enough
        p = self.speakers_per_batch
        self._group = p * self.world_size if p * self.world_size <= len(pools) else p

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

    def global_batches(self) -> Iterator[list[int]]:
        """The epoch's global stream of index batches (all ranks), in order."""
        rng = np.random.default_rng([self.seed, self.epoch])
        queue: list[int] = []
        p, w = self.speakers_per_batch, self.world_size
        for _ in range(self.num_batches):
            if self._group == p * w:
                chosen = self._draw_speakers(rng, queue, p * w)
                groups = [chosen[r * p:(r + 1) * p] for r in range(w)]
            else:
                groups = [self._draw_speakers(rng, queue, p) for _ in range(w)]
            for g in groups:
                yield self._draw_utterances(rng, g)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        pos = self.position() if self.position is not None else None
        if pos is not None:  # (epoch, batches done) from the owner, e.g. the batches a trainer consumed
            self.epoch, self._resume_from = int(pos[0]), int(pos[1])
        start, self._resume_from = self._resume_from, 0
        self._yielded = start
        n = self.speakers_per_batch * self.utterances_per_speaker
        for g, batch in enumerate(self.global_batches()):  # drawn even when skipped: keeps the stream exact
            b, r = divmod(g, self.world_size)
            if r != self.rank or b < start:
                continue
            seeds = crop_seeds(self.seed, self.epoch, g, n)
            self._yielded = b + 1
            yield list(zip(batch, seeds))

    def _draw_speakers(self, rng: np.random.Generator, queue: list[int], m: int) -> list[int]:
        chosen = queue[:m]
        del queue[:m]
        if len(chosen) < m:  # round exhausted: start a new shuffled round, avoiding repeats
            taken = set(chosen)
            fresh = rng.permutation(len(self._pools)).tolist()
            extra = [s for s in fresh if s not in taken][: m - len(chosen)]
            used = set(extra)
            queue[:] = [s for s in fresh if s not in used]
            chosen += extra
        return chosen

    def _draw_utterances(self, rng: np.random.Generator, chosen: list[int]) -> list[int]:
        k = self.utterances_per_speaker
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


def _group(speakers: Sequence[Any] | np.ndarray) -> tuple[list[Any], list[np.ndarray]]:
    """(sorted speaker names, index pool of each): numpy for integer labels (millions of
    utterances), a dict for anything else."""
    arr = np.asarray(speakers)
    if arr.ndim == 1 and arr.dtype.kind in "iu":
        order = np.argsort(arr, kind="stable")
        names, starts = np.unique(arr[order], return_index=True)
        bounds = list(starts[1:]) + [len(arr)]
        return [int(n) for n in names], [order[a:b].astype(np.int64) for a, b in zip(starts, bounds)]
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(speakers):
        groups.setdefault(str(s), []).append(i)
    names = sorted(groups)
    return names, [np.asarray(groups[s], dtype=np.int64) for s in names]
