"""``protocol=emobox``: EmoBox's fold files (``data/<corpus>/fold_<k>/<corpus>_{train,test}_fold_<k>.jsonl``,
one JSON object per line: key ``emodb-03a01Wa``, wav ``downloads/emodb/wav/03a01Wa.wav``, emo, ...)
written here in that format, never downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.evaluation.protocols import EmoBoxFoldsProtocol
from deeptalk_ser.utils.errors import ConfigError, DataError
from e2e_utils import read_json, run_script, speech_emodb_tree

SPEAKERS = ("03", "08", "09", "10")
EMO = {"W": ("angry", "anger"), "T": ("sad", "sad"), "F": ("happy", "happy"), "N": ("neutral", "Neutral"),
       "L": ("boredom", "boredem")}  # letter -> (our label, EmoBox's emo string)


def utterances(letters: str = "WTFN") -> list[Utterance]:
    return [Utterance(id=f"{s}a0{t}{e}a", path=f"wav/{s}a0{t}{e}a.wav", speaker=s, label=EMO[e][0])
            for s in SPEAKERS for t in (1, 2) for e in letters]


def entry(uid: str, key: str | None = None) -> str:
    """One line as EmoBox writes it."""
    return json.dumps({"key": key or f"emodb-{uid}", "dataset": "emodb", "wav": f"downloads/emodb/wav/{uid}.wav",
                       "type": "raw", "sample_rate": 16000, "num_frame": 30045.0, "task": "category",
                       "length": 1.88, "emo": EMO[uid[5]][1], "channel": 1})


def write_folds(root: Path, folds: list[tuple[list[str], list[str]]], sep: str = "_") -> Path:
    for k, (train, test) in enumerate(folds, 1):
        d = root / f"fold_{k}"
        d.mkdir(parents=True, exist_ok=True)
        for side, ids in (("train", train), ("test", test)):
            (d / f"emodb_{side}_fold{sep}{k}.jsonl").write_text("".join(entry(i) + "\n" for i in ids))
    return root


def by_speaker(utts: list[Utterance], test_speakers: set[str]) -> tuple[list[str], list[str]]:
    return [u.id for u in utts if u.speaker not in test_speakers], [u.id for u in utts if u.speaker in test_speakers]


def folds_of(protocol: EmoBoxFoldsProtocol, utts: list[Utterance], manifest: list[Utterance] | None = None):
    if manifest is not None:
        protocol.use_manifest(manifest)
    return protocol.folds(utts, np.array([u.label for u in utts], dtype=object))


def test_speaker_disjoint_folds_are_read_and_declared_independent(tmp_path: Path) -> None:
    utts = utterances()
    root = write_folds(tmp_path / "emodb", [by_speaker(utts, {"03", "08"}), by_speaker(utts, {"09", "10"})])
    p = EmoBoxFoldsProtocol(folds_dir=str(root))
    folds = folds_of(p, utts)
    assert [f.name for f in folds] == ["fold_1", "fold_2"]
    assert sorted(utts[i].speaker for i in folds[0].test) == ["03"] * 8 + ["08"] * 8
    assert len(folds[0].train) == 16 and p.speaker_independent is True


def test_shared_speakers_are_declared_dependent_or_refused(tmp_path: Path) -> None:
    utts = utterances()
    ids = [u.id for u in utts]  # EmoDB-style: every speaker on both sides
    root = write_folds(tmp_path / "emodb", [(ids[::2], ids[1::2])])
    p = EmoBoxFoldsProtocol(folds_dir=str(root))
    folds_of(p, utts)
    assert p.speaker_independent is False
    with pytest.raises(ConfigError, match=r"protocol.speaker_independent: .*emodb_test_fold_1.jsonl: EmoBox fold_1 "
                                          r"shares 4 speaker\(s\) between train and test \(03, 08, 09, 10\)"):
        folds_of(EmoBoxFoldsProtocol(folds_dir=str(root), speaker_independent=True), utts)


def test_unmatched_entry_is_refused_with_file_and_line(tmp_path: Path) -> None:
    utts = utterances()
    train, test = by_speaker(utts, {"03"})
    root = write_folds(tmp_path / "emodb", [(train, test)])
    f = root / "fold_1" / "emodb_test_fold_1.jsonl"
    f.write_text(f.read_text() + entry("11a01Wa") + "\n")
    with pytest.raises(DataError, match=rf"{f}:9: entry 'emodb-11a01Wa' matches no utterance"):
        folds_of(EmoBoxFoldsProtocol(folds_dir=str(root)), utts)
    f.write_text("{not json\n")
    with pytest.raises(DataError, match=rf"{f}:1: not an EmoBox entry"):
        folds_of(EmoBoxFoldsProtocol(folds_dir=str(root)), utts)


def test_other_classes_are_left_out_and_wav_stem_matches(tmp_path: Path) -> None:
    manifest = utterances("WTFNL")
    task = [u for u in manifest if u.label != "boredom"]
    train, test = by_speaker(manifest, {"10"})  # the fold files list boredom too
    root = write_folds(tmp_path / "emodb", [(train, test)], sep="")  # emodb_train_fold1.jsonl naming
    f = root / "fold_1" / "emodb_train_fold1.jsonl"
    lines = f.read_text().splitlines()
    lines[0] = entry(train[0], key="EmoDB/some-other-key")  # only the wav stem matches
    f.write_text("\n".join(lines) + "\n")
    (fold,) = folds_of(EmoBoxFoldsProtocol(folds_dir=str(root)), task, manifest)
    assert len(fold.test) == 8 and len(fold.train) == 24 and task[fold.train[0]].id == train[0]
    with pytest.raises(DataError, match="matches no utterance"):  # without the manifest boredom is unknown
        folds_of(EmoBoxFoldsProtocol(folds_dir=str(root)), task)


def test_missing_or_empty_folds_dir_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="protocol.folds_dir: protocol=emobox needs"):
        folds_of(EmoBoxFoldsProtocol(), utterances())
    with pytest.raises(ConfigError, match="not a folder"):
        folds_of(EmoBoxFoldsProtocol(folds_dir=str(tmp_path / "nope")), utterances())
    with pytest.raises(ConfigError, match="no fold_<k> folder"):
        folds_of(EmoBoxFoldsProtocol(folds_dir=str(tmp_path)), utterances())


@pytest.mark.e2e
def test_evaluate_with_emobox_folds(tmp_path: Path) -> None:
    corpus = speech_emodb_tree(tmp_path / "emodb", texts=("a01", "a02"))
    manifest = utterances("WTFNL")  # the fixture's ids: <spk>a0<t><letter>a
    ids = [u.id for u in manifest]
    root = write_folds(tmp_path / "emobox" / "emodb", [(ids[::2], ids[1::2]), (ids[1::2], ids[::2])])
    run = tmp_path / "run"
    proc = run_script("evaluate.py", f"data.root={corpus}", "experiment=egemaps_baseline", "logger=csv",
                      "protocol=emobox", f"protocol.folds_dir={root}", f"hydra.run.dir={run}", tmp=tmp_path)
    res = read_json(run / "results.json")
    assert (res["protocol"], res["n_folds"], res["n_utterances"]) == ("emobox", 2, 32)
    assert res["speaker_independent"] is False and "speaker-DEPENDENT" in res["warning"]
    assert all(f["speakers_shared"] == 4 for f in res["folds"])
    assert "emobox" in proc.stdout
