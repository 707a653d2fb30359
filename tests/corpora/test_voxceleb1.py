"""VoxCeleb1 loader on a fixture tree in the distributed layout; expected values written by hand."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from deeptalk_ser.data.corpora.voxceleb1 import VoxCeleb1Corpus, read_trial_list, trial_speakers
from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.data.prepare import prepare_manifest

from .speaker_fixtures import build_voxceleb1, instantiate_data_config, write_text


@pytest.fixture
def vox1(tmp_path: Path) -> Path:
    return build_voxceleb1(tmp_path / "voxceleb1")


def _per_speaker(loader: VoxCeleb1Corpus) -> dict[str, int]:
    return dict(Counter(u.speaker for u in loader.scan()))


def test_all_sets(vox1: Path) -> None:
    utts = VoxCeleb1Corpus(root=vox1).scan()
    assert len(utts) == 11
    assert Counter(u.split for u in utts) == {"dev": 7, "test": 4}
    by_id = {u.id: u for u in utts}
    u = by_id["id10001/1zcIwhmdeo4/00002"]
    assert (u.path, u.speaker, u.split, u.label, u.corpus) == (
        "wav/id10001/1zcIwhmdeo4/00002.wav", "id10001", "dev", None, "voxceleb1")
    assert u.extra == {"gender": "m", "nationality": "Ireland", "video": "1zcIwhmdeo4", "iden_split": 2}
    assert by_id["id10272/kaF0S5XT-TQ/00001"].extra == {"gender": "f", "nationality": "India", "video": "kaF0S5XT-TQ"}
    assert [u.id for u in utts] == sorted(u.id for u in utts)  # reproducible order


def test_sets_and_anglophone_filter(vox1: Path) -> None:
    assert _per_speaker(VoxCeleb1Corpus(vox1, sets=["dev"])) == {"id10001": 3, "id10002": 2, "id10003": 2}
    assert _per_speaker(VoxCeleb1Corpus(vox1, sets=["dev"], anglophone_only=True)) == {"id10001": 3, "id10002": 2}
    assert _per_speaker(VoxCeleb1Corpus(vox1, sets=["test"], anglophone_only=True)) == {"id10270": 2}


def test_trial_list_speakers_never_enter(vox1: Path) -> None:
    loader = VoxCeleb1Corpus(vox1, exclude_trial_list="veri_test2.txt")
    assert set(_per_speaker(loader)) == {"id10001", "id10002", "id10003", "id10272"}
    assert len(loader.scan()) == 8
    hard = VoxCeleb1Corpus(vox1, sets=["dev"], anglophone_only=True, exclude_trial_list=str(vox1 / "list_test_hard2.txt"))
    utts = hard.scan()
    assert {u.speaker for u in utts} == {"id10001"} and len(utts) == 3
    assert not {u.speaker for u in utts} & trial_speakers(read_trial_list(vox1 / "list_test_hard2.txt"))


def test_everything_excluded_is_an_error(vox1: Path) -> None:
    with pytest.raises(DataError, match="no VoxCeleb1 .wav files left"):
        VoxCeleb1Corpus(vox1, sets=["test"], exclude_trial_list="veri_test2.txt", anglophone_only=True).scan()


def test_read_trial_list(vox1: Path) -> None:
    trials = read_trial_list(vox1 / "veri_test2.txt")
    # ids as the manifest has them: the list's ".wav" is dropped
    assert trials == [(1, "id10270/x6uYqmx31kE/00001", "id10270/8jEAjG6SegY/00008"),
                      (0, "id10270/x6uYqmx31kE/00001", "id10271/1gtz-CUIygI/00001")]
    assert trial_speakers(trials) == {"id10270", "id10271"}


@pytest.mark.parametrize("bad_line", ["1 id10270/a/00001.wav", "2 a/b/1.wav c/d/2.wav", "1 a b c"])
def test_malformed_trial_line_names_file_and_line(tmp_path: Path, bad_line: str) -> None:
    path = write_text(tmp_path / "veri_test2.txt", "1 a/b/1.wav c/d/2.wav\n\n" + bad_line + "\n")
    with pytest.raises(DataError) as err:
        read_trial_list(path)
    assert err.value.path == str(path) and err.value.line == 3
    assert f"{path}:3" in str(err.value)


def test_malformed_meta_and_split(vox1: Path) -> None:
    meta = vox1 / "vox1_meta.csv"
    meta.write_text(meta.read_text().replace("id10002\tAaron_Tveit\tm\tUSA\tdev", "id10002 Aaron_Tveit m USA dev"))
    with pytest.raises(DataError) as err:
        VoxCeleb1Corpus(vox1).scan()
    assert (err.value.path, err.value.line) == (str(meta), 3)

    build_voxceleb1(vox1)  # restore the meta table
    write_text(vox1 / "iden_split.txt", "1 id10001/1zcIwhmdeo4/00001.wav\n4 id10001/1zcIwhmdeo4/00002.wav\n")
    with pytest.raises(DataError) as err:
        VoxCeleb1Corpus(vox1).scan()
    assert (err.value.path, err.value.line) == (str(vox1 / "iden_split.txt"), 2)


def test_meta_header_and_unknown_speaker(vox1: Path) -> None:
    meta = vox1 / "vox1_meta.csv"
    meta.write_text(meta.read_text().replace("VoxCeleb1 ID\t", "VoxCeleb1 ID,"))
    with pytest.raises(DataError, match="header") as err:
        VoxCeleb1Corpus(vox1).scan()
    assert err.value.line == 1
    build_voxceleb1(vox1)
    (vox1 / "wav" / "id19999" / "v").mkdir(parents=True)
    with pytest.raises(DataError, match="id19999"):
        VoxCeleb1Corpus(vox1).scan()


def test_bad_options(vox1: Path) -> None:
    with pytest.raises(ValueError, match="Dev"):
        VoxCeleb1Corpus(vox1, sets=["Dev"])
    with pytest.raises(DataError, match="not found"):
        VoxCeleb1Corpus(vox1, exclude_trial_list="missing.txt").scan()


def test_prepare_reads_headers_and_reuses(vox1: Path, tmp_path: Path) -> None:
    loader = VoxCeleb1Corpus(vox1, sets=["dev"])
    first = prepare_manifest(loader, tmp_path / "out")
    assert (first.n_utterances, first.reused, first.headers_read) == (7, False, 7)
    rows = [json.loads(line) for line in first.manifest.read_text().splitlines()]
    assert {(r["duration"], r["sample_rate"]) for r in rows} == {(0.1, 16000)}
    assert prepare_manifest(loader, tmp_path / "out").reused
    # a label-file change alters extras, so it must invalidate the stamp even with the same audio
    write_text(vox1 / "iden_split.txt", "3 id10001/1zcIwhmdeo4/00001.wav\n")
    again = prepare_manifest(loader, tmp_path / "out")
    assert not again.reused and again.headers_read == 0


def test_hydra_config(vox1: Path) -> None:
    loader = instantiate_data_config("voxceleb1", vox1.parent)
    assert isinstance(loader, VoxCeleb1Corpus)
    assert (loader.sets, loader.anglophone_only) == (["dev"], True)
    assert _per_speaker(loader) == {"id10001": 3, "id10002": 2}
