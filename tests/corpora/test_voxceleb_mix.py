"""data=voxceleb: VoxCeleb1 dev + VoxCeleb2 dev without the VoxCeleb1-O speakers, and one error
that names every missing corpus root (with its config key and DEEPTALK_DATA_DIR)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from deeptalk_ser.data.corpora.base import CorpusRootMissing
from deeptalk_ser.data.corpora.emodb import EmoDBCorpus
from deeptalk_ser.data.corpora.pretrain_mix import PretrainMixCorpus
from deeptalk_ser.data.corpora.voxceleb1 import VoxCeleb1Corpus
from deeptalk_ser.data.corpora.voxceleb2 import VoxCeleb2Corpus
from deeptalk_ser.utils.errors import DataError, user_error_in

from .speaker_fixtures import CONF_DATA, build_voxceleb1, build_voxceleb2, instantiate_data_config

#: conf/data/voxceleb.yaml on the fixture trees: every dev speaker of both corpora (India included:
#: no anglophone filter), prefixed per corpus.
EXPECTED = {"voxceleb1:id10001": 3, "voxceleb1:id10002": 2, "voxceleb1:id10003": 2,
            "voxceleb2:id00012": 2, "voxceleb2:id00015": 1}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    build_voxceleb1(tmp_path / "data" / "voxceleb1")
    build_voxceleb2(tmp_path / "data" / "voxceleb2", seconds=0.2)
    return tmp_path / "data"


def _config(data_dir: Path):
    return OmegaConf.create({"paths": {"data_dir": str(data_dir)}, "data": OmegaConf.load(CONF_DATA / "voxceleb.yaml")})


def _user_error(data_dir: Path) -> DataError:
    """The user error building the voxceleb loader raises (Hydra's instantiate wraps it)."""
    with pytest.raises(Exception) as info:
        instantiate_data_config("voxceleb", data_dir)
    err = user_error_in(info.value)
    assert isinstance(err, DataError), info.value
    return err


def test_voxceleb_scans_both_dev_sets(data_dir: Path) -> None:
    mix = instantiate_data_config("voxceleb", data_dir)
    assert isinstance(mix, PretrainMixCorpus)
    assert [type(p) for p in mix.parts] == [VoxCeleb1Corpus, VoxCeleb2Corpus]
    utts = mix.scan()
    assert Counter(u.speaker for u in utts) == EXPECTED
    assert {u.split for u in utts} == {"dev"} and {u.corpus for u in utts} == {"voxceleb1", "voxceleb2"}
    assert all(Path(u.path).is_absolute() and Path(u.path).is_file() for u in utts)
    vox1 = mix.parts[0]
    assert vox1.exclude_trial_list == data_dir / "voxceleb1" / "veri_test2.txt" and not vox1.anglophone_only


def test_vox1_o_speakers_are_the_ones_excluded(data_dir: Path) -> None:
    """exclude_trial_list drops exactly the speakers named in veri_test2.txt (id10270, id10271 in
    the fixture), whatever their set: shown by also admitting the test set."""
    cfg = _config(data_dir)
    cfg.data.loader.parts[0].sets = ["dev", "test"]
    speakers = {u.speaker for u in instantiate(cfg.data.loader).scan()}
    assert "voxceleb1:id10272" in speakers  # a test speaker not in Vox1-O stays
    assert not {"voxceleb1:id10270", "voxceleb1:id10271"} & speakers
    cfg.data.loader.parts[0].exclude_trial_list = None
    assert {"voxceleb1:id10270", "voxceleb1:id10271"} <= {u.speaker for u in instantiate(cfg.data.loader).scan()}


def test_every_missing_root_in_one_error(tmp_path: Path) -> None:
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    err = _user_error(empty)
    msg = str(err)
    assert f"data.loader.parts[0].root={empty / 'voxceleb1'}" in msg
    assert f"data.loader.parts[1].root={empty / 'voxceleb2'}" in msg
    assert "2 of the 2 corpus roots" in msg and "DEEPTALK_DATA_DIR" in msg and "\n" not in msg
    assert err.path == str(empty.resolve()) and not isinstance(err, CorpusRootMissing)


def test_one_missing_root_names_only_that_part(tmp_path: Path) -> None:
    build_voxceleb2(tmp_path / "voxceleb2", seconds=0.2)
    msg = str(_user_error(tmp_path))
    assert "1 of the 2 corpus roots" in msg and "parts[0].root" in msg and "parts[1]" not in msg


def test_other_part_errors_are_not_collected(tmp_path: Path) -> None:
    """Only a missing root is gathered; any other error of a part stops at once, unchanged."""
    with pytest.raises(Exception, match=r"sets: unknown value") as info:  # wrapped by Hydra's instantiate
        PretrainMixCorpus([{"_target_": "deeptalk_ser.data.corpora.voxceleb1.VoxCeleb1Corpus",
                            "root": str(build_voxceleb1(tmp_path / "voxceleb1")), "sets": ["nope"]},
                           {"_target_": "deeptalk_ser.data.corpora.voxceleb2.VoxCeleb2Corpus",
                            "root": str(tmp_path / "missing")}])
    assert "corpus roots" not in str(info.value)


def test_single_corpus_message_names_the_keys(tmp_path: Path) -> None:
    with pytest.raises(CorpusRootMissing) as info:
        EmoDBCorpus(tmp_path / "nowhere")
    msg = str(info.value)
    assert "corpus root not found" in msg and "data.root" in msg and "DEEPTALK_DATA_DIR" in msg


@pytest.mark.e2e
def test_train_script_reports_both_roots_in_one_line(tmp_path: Path) -> None:
    """``python train.py encoder=deeptalk data=voxceleb`` as typed, DEEPTALK_DATA_DIR pointing at a
    folder without the corpora: exit 1, one line naming both keys and the variable, no traceback."""
    from e2e_utils import run_script

    empty = tmp_path / "data"
    empty.mkdir()
    proc = run_script("train.py", "encoder=deeptalk", "data=voxceleb", tmp=tmp_path, check=False,
                      env={"DEEPTALK_DATA_DIR": str(empty), "HYDRA_FULL_ERROR": "0"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("train.py: error: ")]
    for needle in (f"data.loader.parts[0].root={empty / 'voxceleb1'}", f"data.loader.parts[1].root={empty / 'voxceleb2'}",
                   "DEEPTALK_DATA_DIR"):
        assert needle in line, line
