"""pretrain_mix: several speaker corpora in one manifest with ``<corpus>:``-prefixed ids."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from deeptalk_ser.data.corpora.kaldi import KaldiCorpus
from deeptalk_ser.data.corpora.librispeech import LibriSpeechCorpus
from deeptalk_ser.data.corpora.pretrain_mix import PretrainMixCorpus, common_root
from deeptalk_ser.data.corpora.voxceleb1 import VoxCeleb1Corpus
from deeptalk_ser.data.corpora.voxceleb2 import VoxCeleb2Corpus
from deeptalk_ser.data.prepare import prepare_manifest

from .speaker_fixtures import build_kaldi, build_librispeech, build_voxceleb1, build_voxceleb2, instantiate_data_config


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    build_voxceleb1(tmp_path / "data" / "voxceleb1")
    build_librispeech(tmp_path / "data" / "LibriSpeech")
    build_voxceleb2(tmp_path / "data" / "voxceleb2", seconds=0.2)
    build_kaldi(tmp_path / "data" / "speechocean762")
    return tmp_path / "data"


def test_ids_prefixed_and_speakers_distinct(data_dir: Path) -> None:
    mix = PretrainMixCorpus([LibriSpeechCorpus(data_dir / "LibriSpeech"),
                             KaldiCorpus(data_dir / "speechocean762", subsets=["train"])])
    utts = mix.scan()
    # LibriSpeech speaker "14" and Kaldi speaker "14" are different people: two classes.
    assert Counter(u.speaker for u in utts) == {"librispeech:14": 2, "kaldi:14": 2, "kaldi:0003": 1}
    by_id = {u.id: u for u in utts}
    assert set(by_id) == {"librispeech:14-208-0000", "librispeech:14-208-0001",
                          "kaldi:000010011", "kaldi:000010012", "kaldi:000030012"}
    u = by_id["kaldi:000030012"]
    assert (u.split, u.corpus, u.extra["gender"]) == ("train", "kaldi", "m")
    assert u.path == str((data_dir / "speechocean762/WAVE/SPEAKER0003/000030012.flac").resolve())
    assert mix.root == data_dir.resolve()  # common parent of the parts


def test_dict_parts_prefix_and_options(data_dir: Path) -> None:
    mix = PretrainMixCorpus(parts=[
        {"_target_": "deeptalk_ser.data.corpora.voxceleb1.VoxCeleb1Corpus", "root": str(data_dir / "voxceleb1"), "sets": ["test"]},
        {"_target_": "deeptalk_ser.data.corpora.kaldi.KaldiCorpus", "root": str(data_dir / "speechocean762"), "subsets": ["test"], "prefix": "so762"},
    ])
    utts = mix.scan()
    assert Counter(u.speaker for u in utts) == {"voxceleb1:id10270": 2, "voxceleb1:id10271": 1,
                                                "voxceleb1:id10272": 1, "so762:0007": 3}
    opts = mix.options()
    assert opts["corpus"] == "pretrain_mix"
    assert [(p["prefix"], p["corpus"]) for p in opts["parts"]] == [("voxceleb1", "voxceleb1"), ("so762", "kaldi")]
    assert opts["parts"][0]["sets"] == ["test"] and opts["parts"][1]["subsets"] == ["test"]


def test_refuses_ambiguous_parts(data_dir: Path) -> None:
    root = data_dir / "speechocean762"
    with pytest.raises(ValueError, match="prefix"):
        PretrainMixCorpus([KaldiCorpus(root, subsets=["train"]), KaldiCorpus(root, subsets=["test"])])
    two = PretrainMixCorpus([{"_target_": "deeptalk_ser.data.corpora.kaldi.KaldiCorpus", "root": str(root), "subsets": ["train"], "prefix": "a"},
                             {"_target_": "deeptalk_ser.data.corpora.kaldi.KaldiCorpus", "root": str(root), "subsets": ["test"], "prefix": "b"}])
    assert len({u.speaker for u in two.scan()}) == 3
    with pytest.raises(ValueError, match="non-empty"):
        PretrainMixCorpus([])
    with pytest.raises(ValueError, match="needs '_target_'"):
        PretrainMixCorpus([{"root": str(root)}])


def test_common_root() -> None:
    assert common_root([Path("/srv/data/a"), Path("/srv/data/b/c")]) == Path("/srv/data")
    assert common_root([Path("/srv/a"), Path("/mnt/b")]) == Path("/srv/a")  # nothing shared: first root


def test_prepare_mix(data_dir: Path, tmp_path: Path) -> None:
    mix = PretrainMixCorpus([VoxCeleb1Corpus(data_dir / "voxceleb1", sets=["dev"]),
                             LibriSpeechCorpus(data_dir / "LibriSpeech", subsets=["train-clean-100"])])
    report = prepare_manifest(mix, tmp_path / "out")
    assert (report.n_utterances, report.headers_read) == (7 + 3, 10)
    assert prepare_manifest(mix, tmp_path / "out").reused


def test_hydra_config(data_dir: Path) -> None:
    mix = instantiate_data_config("pretrain_mix", data_dir)
    assert isinstance(mix, PretrainMixCorpus)
    assert [type(p) for p in mix.parts] == [VoxCeleb1Corpus, VoxCeleb2Corpus, LibriSpeechCorpus]
    # dev, anglophone, no Vox1-O speakers + VoxCeleb2 dev + LibriSpeech train-other-500
    assert Counter(u.speaker for u in mix.scan()) == {"voxceleb1:id10001": 3, "voxceleb1:id10002": 2,
                                                      "voxceleb2:id00012": 2, "voxceleb2:id00015": 1,
                                                      "librispeech:14": 2}
