"""The streaming training store: fidelity, resumable / incremental preparation, skips, crops
that do not depend on DataLoader workers, exact resume, disjoint ranks, no audio in the dataset."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from conftest import speech_like
from deeptalk_ser.data.audio.framing import frame_signal, random_crop
from deeptalk_ser.data.audio.io import load_audio
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.embedding.encoders.deeptalk import deeptalk_frontend
from deeptalk_ser.training.crop_store import (INDEX_ARRAYS, CropStore, frontend_key, plan_shards, prepare_store)
from deeptalk_ser.training.data import SpeakerDataModule, StoreCropDataset
from deeptalk_ser.training.sampler import SpeakerBatchSampler
from deeptalk_ser.utils.errors import DataError

#: Measured max |z(store) - z(float32)| over all crops of the corpus below (z-scored frames,
#: so in units of a frame's standard deviation): 0.047; the tolerance leaves headroom. The worst
#: samples sit in the quietest frames (envelope troughs ~60 dB below the utterance peak).
MAX_QUANT_DEV = 0.08
RMS_QUANT_DEV = 0.005
SHARD = 2  # mean utterances per shard: many shards from a tiny corpus


def write_corpus(root: Path, n_spk: int = 6, n_utt: int = 4, seed: int = 0, start: int = 0) -> list[Utterance]:
    rng = np.random.default_rng(seed)
    utts = []
    for s in range(start, start + n_spk):
        for u in range(n_utt):
            p = root / f"spk{s:02d}" / f"u{u}.flac"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(p), speech_like(0.9 + 2.5 * rng.random(), 16000, f0=95 + 17 * s), 16000)
            utts.append(Utterance(id=f"spk{s:02d}-u{u}", path=str(p), speaker=f"spk{s:02d}", split="train"))
    return utts


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Utterance]:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def built(corpus: list[Utterance], tmp_path_factory: pytest.TempPathFactory) -> CropStore:
    rep = prepare_store(corpus, deeptalk_frontend(), tmp_path_factory.mktemp("store"), shard_size=SHARD)
    return CropStore(rep.path)


def assert_same_store(a: CropStore, b: CropStore) -> None:
    for name in INDEX_ARRAYS:
        assert np.array_equal(a.array(name), b.array(name)), name
    assert a.ids() == b.ids() and a.speakers == b.speakers and a.meta["shards"] == b.meta["shards"]
    for key in a.meta["shards"]:
        assert np.array_equal(np.load(a.shard_dir / f"{key}.npy"), np.load(b.shard_dir / f"{key}.npy")), key


def test_store_equals_framing_from_audio(built: CropStore, corpus: list[Utterance]) -> None:
    fe = deeptalk_frontend()
    by_id = {u.id: u for u in corpus}
    devs = []
    for i, uid in enumerate(built.ids()):
        ref = frame_signal(fe(*load_audio(by_id[uid].path)))  # float32 path (the old FrameBank)
        mine = built.frames(i)
        assert mine.shape == ref.shape and int(built.array("n_kept")[i]) == len(ref)
        for seed in range(12):
            crop = built.crop(i, 200, np.random.default_rng(seed))
            # exact: a crop read from a sample range == framing the whole stored utterance, then random_crop
            assert np.array_equal(crop, random_crop(mine, 200, np.random.default_rng(seed))[0])
            devs.append(crop - random_crop(ref, 200, np.random.default_rng(seed))[0])
    dev = np.concatenate([d.ravel() for d in devs])
    assert np.abs(dev).max() < MAX_QUANT_DEV and np.sqrt(np.mean(dev ** 2)) < RMS_QUANT_DEV
    assert built.meta["n_skipped"] == 0 and len(built) == len(corpus)


def test_interrupted_prepare_resumes_to_the_clean_store(built: CropStore, corpus: list[Utterance],
                                                        tmp_path: Path) -> None:
    done: list[str] = []

    def kill_after_two(key: str) -> None:
        done.append(key)
        if len(done) == 2:
            raise KeyboardInterrupt("simulated kill")

    root = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        prepare_store(corpus, deeptalk_frontend(), root, shard_size=SHARD, num_workers=2, on_shard_done=kill_after_two)
    shard_dir = root / frontend_key(deeptalk_frontend()) / "shards"
    finished = sorted(p.stem for p in shard_dir.glob("*.json"))
    n_total = len(built.meta["shards"])
    assert 2 <= len(finished) < n_total  # at most the shards in flight finished after the kill
    assert not list(shard_dir.parent.glob("index/*/meta.json"))  # no index: the store is not usable yet
    leftover = shard_dir / f".{built.meta['shards'][0]}.npy.x.tmp"
    leftover.write_bytes(b"half a shard")  # a kill mid-write
    (shard_dir / f"{finished[0]}.json").write_text('{"version": ')  # a finished shard damaged later: redone
    rep = prepare_store(corpus, deeptalk_frontend(), root, shard_size=SHARD, num_workers=2)
    assert rep.shards_reused == len(finished) - 1 and rep.shards_built == n_total - len(finished) + 1
    assert not leftover.exists()  # the lock holder cleans what a kill left
    assert_same_store(CropStore(rep.path), built)
    again = prepare_store(corpus, deeptalk_frontend(), root, shard_size=SHARD)
    assert again.reused and again.path == rep.path


def test_incremental_growth_rewrites_only_affected_shards(corpus: list[Utterance], tmp_path: Path) -> None:
    fe = deeptalk_frontend()
    extra = write_corpus(tmp_path / "more", n_spk=2, n_utt=4, seed=1, start=6)
    grown = corpus + extra
    old_plan, new_plan = plan_shards(corpus, SHARD), plan_shards(grown, SHARD)
    old_keys = {tuple(u.id for u in b) for b in old_plan}
    unchanged = sum(tuple(u.id for u in b) in old_keys for b in new_plan)
    root = tmp_path / "store"
    first = prepare_store(corpus, fe, root, shard_size=SHARD)
    rep = prepare_store(grown, fe, root, shard_size=SHARD)
    assert not rep.reused and rep.path != first.path  # a new index for the new corpus ...
    assert rep.shards_reused == unchanged >= len(old_plan) - 2  # ... over the untouched shards
    assert rep.shards_built == len(new_plan) - unchanged
    clean = prepare_store(grown, fe, tmp_path / "clean", shard_size=SHARD)
    assert_same_store(CropStore(rep.path), CropStore(clean.path))
    # a changed file (new size / mtime) rebuilds its own shard only
    victim = grown[5]
    sf.write(victim.path, speech_like(1.7, 16000, f0=300.0), 16000)
    os.utime(victim.path, ns=(1, 10**18))
    rep2 = prepare_store(grown, fe, root, shard_size=SHARD)
    assert rep2.shards_built == 1 and rep2.shards_reused == len(new_plan) - 1
    # other front-end parameters: a different store, nothing reused
    fe2 = deeptalk_frontend()
    fe2.normalize_dbfs = -20.0
    rep3 = prepare_store(grown, fe2, root, shard_size=SHARD)
    assert rep3.shards_reused == 0 and frontend_key(fe2) != frontend_key(fe)


def test_skipped_utterances_are_counted_and_listed(corpus: list[Utterance], tmp_path: Path) -> None:
    silent = tmp_path / "silent.flac"
    sf.write(str(silent), np.zeros(16000, np.float32), 16000)
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"not audio at all")
    bad = [Utterance(id="zz-silent", path=str(silent), speaker="spk00"),
           Utterance(id="zz-broken", path=str(broken), speaker="spk01")]
    with pytest.raises(DataError, match="broken.flac"):
        prepare_store(corpus + bad, deeptalk_frontend(), tmp_path / "s1", shard_size=SHARD, on_error="raise")
    rep = prepare_store(corpus + bad, deeptalk_frontend(), tmp_path / "s2", shard_size=SHARD, on_error="skip")
    reasons = {s["id"]: s["reason"] for s in rep.skipped}
    assert set(reasons) == {"zz-silent", "zz-broken"} and reasons["zz-silent"] == "no voiced frame after VAD"
    assert rep.n_utterances == len(corpus) and CropStore(rep.path).meta["n_skipped"] == 2
    # shards written with skip must not make a later on_error=raise run silently skip
    with pytest.raises(DataError, match="broken.flac"):
        prepare_store(corpus + bad, deeptalk_frontend(), tmp_path / "s2", shard_size=SHARD, on_error="raise")


def _loader(store: CropStore, workers: int, rank: int = 0, world: int = 1, n: int = 6) -> DataLoader:
    sampler = SpeakerBatchSampler(np.asarray(store.labels), 2, 3, num_batches=n, seed=3, rank=rank, world_size=world)
    return DataLoader(StoreCropDataset(store, 120), batch_sampler=sampler, num_workers=workers)


def test_batches_do_not_depend_on_workers(built: CropStore) -> None:
    a = list(_loader(built, 0))
    b = list(_loader(built, 2))
    assert len(a) == len(b) == 6
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.shape == (6, 120, 160) and torch.equal(xa, xb) and torch.equal(ya, yb)


def _dm(corpus: list[Utterance], store_root: Path, **kw) -> SpeakerDataModule:
    args = dict(speakers_per_batch=2, utterances_per_speaker=3, crop_frames=120, batches_per_epoch=5, val_speakers=0,
                store_dir=store_root, seed=1, shard_size=SHARD, num_workers=0, pin_memory=False,
                persistent_workers=False, prefetch_factor=None, on_error="raise", prepare_workers=1, augment=None)
    args.update(kw)
    dm = SpeakerDataModule(corpus, deeptalk_frontend(), **args)
    dm.setup("fit")
    return dm


def test_resume_from_datamodule_state_gives_the_next_batch(corpus: list[Utterance], tmp_path: Path) -> None:
    ref = list(_dm(corpus, tmp_path, num_workers=2).train_dataloader())
    dm = _dm(corpus, tmp_path, num_workers=2, persistent_workers=True, prefetch_factor=2)
    it = iter(dm.train_dataloader())
    for _ in range(2):
        next(it)
    # the loader has prefetched further than the two batches trained on: the trainer's count is saved
    dm._consumed = 2  # what on_before_batch_transfer counts under a Trainer
    state = dm.state_dict()
    assert state["sampler"] == {"epoch": 0, "batches_yielded": 2} and state["batches_consumed"] == 2
    assert dm.sampler.state_dict()["batches_yielded"] > 2  # the sampler itself ran ahead (prefetch)
    del it
    resumed = _dm(corpus, tmp_path, num_workers=2)
    resumed.load_state_dict(state)
    got = list(resumed.train_dataloader())
    assert len(got) == 3
    for (x, y), (xr, yr) in zip(got, ref[2:]):
        assert torch.equal(x, xr) and torch.equal(y, yr)


def test_two_ranks_get_disjoint_batches(corpus: list[Utterance], tmp_path: Path) -> None:
    r0 = _dm(corpus, tmp_path, rank=0, world_size=2)
    r1 = _dm(corpus, tmp_path, rank=1, world_size=2)
    assert r0.report.path == r1.report.path and r1.report.reused
    b0, b1 = list(r0.sampler), list(r1.sampler)
    assert len(b0) == len(b1) == 5
    labels = np.asarray(r0.store.labels)
    for x, y in zip(b0, b1):
        i0, i1 = {i for i, _ in x}, {i for i, _ in y}
        assert not i0 & i1
        assert not set(labels[list(i0)]) & set(labels[list(i1)])  # P * world <= speakers: no shared speaker
    # the ranks partition one global stream of (seed, epoch): rank r takes global batches b * 2 + r
    g = list(SpeakerBatchSampler(labels, 2, 3, num_batches=5, seed=1, world_size=2).global_batches())
    assert len(g) == 10
    assert [[i for i, _ in b] for b in b0] == g[0::2] and [[i for i, _ in b] for b in b1] == g[1::2]


def _checksum(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(1).double()
    return (flat * torch.linspace(0, 1, flat.shape[1], dtype=torch.float64)).sum(1)


def _ddp_worker(rank: int, store_dir: str, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    store = CropStore(store_dir)
    loader = _loader(store, 0, rank=dist.get_rank(), world=dist.get_world_size(), n=4)
    rows = [torch.stack([_checksum(x), y.double()], 1) for x, y in loader]
    got = [None, None]
    dist.all_gather_object(got, [r.tolist() for r in rows])
    if rank == 0:
        np.save(Path(out_dir) / "gathered.npy", np.array(got, dtype=np.float64))
    dist.destroy_process_group()


def test_ddp_gloo_ranks_read_disjoint_batches(built: CropStore, tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(str(built.index_dir), str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    got = np.load(tmp_path / "gathered.npy")  # (rank, step, item, [crop checksum, speaker])
    assert got.shape[:2] == (2, 4)
    for step in range(4):
        assert not set(got[0, step, :, 1]) & set(got[1, step, :, 1])  # disjoint speakers
        assert not set(got[0, step, :, 0]) & set(got[1, step, :, 0])  # different crops
    single = list(_loader(built, 0, rank=1, world=2, n=4))
    assert np.array_equal(got[1, :, :, 1], [y.numpy() for _, y in single])
    assert np.array_equal(got[1, :, :, 0], [_checksum(x).numpy() for x, _ in single])  # same crops as in-process


def test_dataset_holds_no_audio(built: CropStore, corpus: list[Utterance], tmp_path: Path) -> None:
    ds = StoreCropDataset(built, 200)
    ds[(0, 1)]  # opens maps and index columns: still not part of the pickle
    small = len(pickle.dumps(ds))
    assert small < 1000
    long = write_corpus(tmp_path / "long", n_spk=3, n_utt=2, seed=5)
    for u in long:  # 10x longer audio, same number of utterances
        y, sr = sf.read(u.path)
        sf.write(u.path, np.tile(y, 10), sr)
    rep = prepare_store(long, deeptalk_frontend(), tmp_path / "s", shard_size=SHARD)
    other = StoreCropDataset(CropStore(rep.path), 200)
    assert abs(len(pickle.dumps(other)) - small) < 200
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[(3, 7)][0], ds[(3, 7)][0])
    assert not any(isinstance(v, np.ndarray) for v in vars(clone.store).values())


def test_corrupt_shard_is_rebuilt(corpus: list[Utterance], tmp_path: Path) -> None:
    rep = prepare_store(corpus[:8], deeptalk_frontend(), tmp_path, shard_size=SHARD)
    store = CropStore(rep.path)
    first = store.shard_dir / f"{store.meta['shards'][0]}.npy"
    first.write_bytes(first.read_bytes()[:-10])  # truncated (e.g. a disk-full copy)
    shutil.rmtree(rep.path)  # force a re-assembly of the index
    again = prepare_store(corpus[:8], deeptalk_frontend(), tmp_path, shard_size=SHARD)
    assert again.shards_built == 1
    clean = prepare_store(corpus[:8], deeptalk_frontend(), tmp_path / "clean", shard_size=SHARD)
    assert_same_store(CropStore(again.path), CropStore(clean.path))


def test_deleted_shard_is_rebuilt_although_the_index_exists(corpus: list[Utterance], tmp_path: Path) -> None:
    rep = prepare_store(corpus[:8], deeptalk_frontend(), tmp_path, shard_size=SHARD)
    store = CropStore(rep.path)
    (store.shard_dir / f"{store.meta['shards'][-1]}.npy").unlink()
    again = prepare_store(corpus[:8], deeptalk_frontend(), tmp_path, shard_size=SHARD)
    assert not again.reused and again.shards_built == 1 and again.path == rep.path
    assert CropStore(again.path).frames(len(store) - 1).shape[1] == 160
