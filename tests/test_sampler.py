"""SpeakerBatchSampler: P x K layout, reproducibility, epochs, ranks, exact resume, crop seeds."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from deeptalk_ser.training.sampler import SpeakerBatchSampler, crop_seeds

# 6 speakers with 5..10 utterances, interleaved so indices of a speaker are not contiguous
COUNTS = {"spk_a": 5, "spk_b": 6, "spk_c": 7, "spk_d": 8, "spk_e": 9, "spk_f": 10}
SPEAKERS = [s for i in range(10) for s, n in COUNTS.items() if i < n]


def idx(batches: list) -> list[list[int]]:
    """The dataset indices of (index, crop seed) batches."""
    return [[i for i, _ in b] for b in batches]


def make(**kw) -> SpeakerBatchSampler:
    args = dict(
        speakers=SPEAKERS, speakers_per_batch=3, utterances_per_speaker=4, num_batches=12, seed=7,
        rank=0, world_size=1,
    )
    args.update(kw)
    return SpeakerBatchSampler(**args)


def test_batches_are_p_speakers_by_k_utterances():
    sampler = make()
    batches = idx(sampler)
    assert len(batches) == len(sampler) == 12
    for batch in batches:
        assert len(batch) == 12 and all(isinstance(i, int) for i in batch)
        chunks = [batch[i * 4 : (i + 1) * 4] for i in range(3)]
        owners = [{SPEAKERS[i] for i in chunk} for chunk in chunks]
        assert all(len(o) == 1 for o in owners), "a chunk mixes speakers"
        assert len(set.union(*owners)) == 3, "a speaker appears twice in one batch"
        assert all(len(set(chunk)) == 4 for chunk in chunks), "repeat despite enough utterances"


def test_speakers_are_covered_evenly():
    # rounds over a shuffled speaker list: after any number of batches counts differ by <= 1
    sampler = make(speakers_per_batch=4, num_batches=9)
    seen: Counter[str] = Counter()
    for batch in idx(sampler):
        seen.update({SPEAKERS[i] for i in batch})
        assert max(seen.values()) - min(seen[s] for s in COUNTS) <= 1


def test_deterministic_and_epoch_dependent():
    a, b = make(), make()
    first = list(a)
    assert first == list(b)
    assert first == list(a)  # re-iterating the same epoch repeats it
    a.set_epoch(1)
    second = list(a)
    assert second != first
    a.set_epoch(0)
    assert list(a) == first
    assert list(make(seed=8)) != first


def test_ranks_partition_one_global_stream():
    r0 = list(make(rank=0, world_size=2))
    r1 = list(make(rank=1, world_size=2))
    assert len(r0) == len(r1) == 12  # equal step counts on every rank: no DDP hang
    stream = list(make(rank=0, world_size=2).global_batches())
    assert idx(r0) == stream[0::2] and idx(r1) == stream[1::2]
    for a, b in zip(idx(r0), idx(r1)):  # P * world (6) <= 6 speakers: concurrent ranks share none
        assert not {SPEAKERS[i] for i in a} & {SPEAKERS[i] for i in b}
    with pytest.raises(ValueError, match="rank 2 outside"):
        make(rank=2, world_size=2)


def test_more_ranks_than_speaker_rounds_still_balanced():
    # P * world > speakers: ranks may share speakers, every batch still has P distinct ones
    batches = idx(make(rank=1, world_size=3))
    assert len(batches) == 12
    for batch in batches:
        assert len({SPEAKERS[i] for i in batch}) == 3


def test_crop_seeds_depend_on_seed_epoch_global_batch_and_slot_only():
    a = make(rank=1, world_size=2)
    a.set_epoch(3)
    batches = list(a)
    for b, batch in enumerate(batches):
        assert [s for _, s in batch] == crop_seeds(7, 3, b * 2 + 1, 12)
    assert len({s for batch in batches for _, s in batch}) == 12 * 12  # all different
    assert crop_seeds(7, 3, 0, 4) != crop_seeds(7, 4, 0, 4) != crop_seeds(8, 3, 0, 4)


def test_integer_labels_group_like_names():
    names = sorted(COUNTS)
    labels = [names.index(s) for s in SPEAKERS]
    import numpy as np

    assert list(make(speakers=np.asarray(labels))) == list(make())


def test_rank_defaults_without_process_group():
    sampler = SpeakerBatchSampler(SPEAKERS, 3, 4, num_batches=2, seed=0)
    assert (sampler.rank, sampler.world_size) == (0, 1)


@pytest.mark.parametrize("call_set_epoch", [False, True])
def test_exact_resume(call_set_epoch):
    reference = make()
    reference.set_epoch(2)
    uninterrupted = list(reference)
    reference.set_epoch(3)
    next_epoch = list(reference)

    first = make()
    first.set_epoch(2)
    head = list(itertools.islice(iter(first), 5))
    assert head == uninterrupted[:5]
    state = first.state_dict()
    assert state == {"epoch": 2, "batches_yielded": 5}

    resumed = make()
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state
    if call_set_epoch:  # Lightning re-sets the current epoch after restoring a checkpoint
        resumed.set_epoch(2)
    assert list(resumed) == uninterrupted[5:]
    assert resumed.state_dict() == {"epoch": 2, "batches_yielded": 12}
    resumed.set_epoch(3)
    assert list(resumed) == next_epoch


def test_new_epoch_discards_resume_position():
    sampler = make()
    sampler.load_state_dict({"epoch": 2, "batches_yielded": 5})
    sampler.set_epoch(3)  # the loaded epoch is over: start epoch 3 from its first batch
    assert sampler.state_dict() == {"epoch": 3, "batches_yielded": 0}
    reference = make()
    reference.set_epoch(3)
    assert list(sampler) == list(reference)


def test_bad_state_rejected():
    with pytest.raises(ValueError, match="invalid sampler state"):
        make().load_state_dict({"epoch": 0, "batches_yielded": 13})


def test_short_speaker_padded_with_replacement():
    speakers = SPEAKERS + ["tiny", "tiny"]  # 2 utterances < K=4
    tiny = {len(SPEAKERS), len(SPEAKERS) + 1}
    sampler = make(speakers=speakers, num_batches=30)
    assert sampler.short_speakers == ("tiny",)
    hits = 0
    for batch in idx(sampler):
        for c in range(3):
            chunk = batch[c * 4 : (c + 1) * 4]
            if set(chunk) <= tiny:
                hits += 1
                assert set(chunk) == tiny  # every real utterance used, the rest repeats
    assert hits > 0


def test_short_speaker_dropped():
    speakers = SPEAKERS + ["tiny", "tiny"]
    sampler = make(speakers=speakers, num_batches=30, drop_short_speakers=True)
    assert "tiny" not in sampler.speaker_names
    assert all(i < len(SPEAKERS) for batch in idx(sampler) for i in batch)


def test_too_few_speakers():
    with pytest.raises(ValueError, match="6 speaker.*speakers_per_batch=7"):
        make(speakers_per_batch=7)
    with pytest.raises(ValueError, match="after dropping 2"):
        make(utterances_per_speaker=7, speakers_per_batch=5, drop_short_speakers=True)


class _IndexOnly(Dataset):
    """Items are (index, crop seed) pairs, as the crop dataset gets them."""

    def __len__(self) -> int:
        return len(SPEAKERS)

    def __getitem__(self, item: tuple[int, int]) -> torch.Tensor:
        return torch.tensor(item[0])


def test_works_as_dataloader_batch_sampler_and_receives_epochs():
    sampler = make(num_batches=3)
    loader = DataLoader(_IndexOnly(), batch_sampler=sampler)
    got = [b.tolist() for b in loader]
    assert got == idx(make(num_batches=3))
    # Lightning's _set_sampler_epoch calls set_epoch on ``loader.batch_sampler.sampler``
    # (not on the batch sampler); the relay must forward it.
    loader.batch_sampler.sampler.set_epoch(4)
    assert sampler.epoch == 4
    assert [b.tolist() for b in loader] != got
