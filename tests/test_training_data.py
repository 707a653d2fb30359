"""Training data: utterances without voiced frames are skipped and counted; short ones tiled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from conftest import speech_like
from deeptalk_ser.embedding.encoders.deeptalk import deeptalk_frontend
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.training.crop_store import CropStore, prepare_store
from deeptalk_ser.training.data import StoreCropDataset, split_speakers


def _utt(tmp: Path, name: str, y: np.ndarray, spk: str, sr: int = 8000) -> Utterance:
    p = tmp / f"{name}.flac"
    sf.write(str(p), y, sr)
    return Utterance(id=name, path=str(p), speaker=spk, split="train")


def test_silent_utterance_is_skipped_and_counted(tmp_path: Path) -> None:
    utts = [_utt(tmp_path, "voiced", speech_like(2.5, 8000), "a"),
            _utt(tmp_path, "silent", np.zeros(16000, np.float32), "a"),
            _utt(tmp_path, "short", speech_like(0.8, 8000), "b")]
    rep = prepare_store(utts, deeptalk_frontend(), tmp_path / "store")
    store = CropStore(rep.path)
    assert store.ids() == ["short", "voiced"]  # id-sorted
    assert rep.skipped == [{"id": "silent", "reason": "no voiced frame after VAD"}]
    assert store.meta["skipped"] == rep.skipped and store.speakers == ["a", "b"]
    ds = StoreCropDataset(store, crop_frames=200)
    crop, label = ds[(0, 123)]  # 0.8 s gives < 200 frames: tiled up to a full crop
    assert len(store.frames(0)) < 200
    assert tuple(crop.shape) == (200, 160) and label == 1
    assert np.isfinite(crop.numpy()).all()


def test_validation_speakers_are_held_out_whole() -> None:
    utts = [Utterance(id=f"{s}-{i}", path="x", speaker=s) for s in "abcdefgh" for i in range(3)]
    train, val = split_speakers(utts, 3, seed=0)
    assert len({u.speaker for u in val}) == 3
    assert not {u.speaker for u in train} & {u.speaker for u in val}
    assert len(train) + len(val) == len(utts)
    assert split_speakers(utts, 3, seed=0)[1] == val  # seeded
