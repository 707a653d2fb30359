"""Every data option composes with evaluate and train the way the entry scripts compose it, and its
loader instantiates and scans a fixture tree of that corpus; every protocol option composes and
instantiates; a protocol named on the command line wins over any data option's choice."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from corpora.emotion_fixtures import (build_crema_d, build_embedding_arrays, build_iemocap, build_label_folders,
                                      build_msp_podcast, build_nemo, build_ravdess, build_user_manifest)
from corpora.speaker_fixtures import build_kaldi, build_librispeech, build_voxceleb1, build_voxceleb2
from deeptalk_ser.evaluation.protocols import Protocol

PROJECT = Path(__file__).resolve().parents[1]
CONF = PROJECT / "conf"
DATA_OPTIONS = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))
PROTOCOL_OPTIONS = sorted(p.stem for p in (CONF / "protocol").glob("*.yaml"))
#: Data options that choose their own evaluation protocol (``override /protocol``); the others
#: keep evaluate's default. train.yaml composes the protocol group too, so every option composes
#: with train.
OWN_PROTOCOL = {"crema_d": "actor_kfold", "iemocap": "leave_one_session_out", "msp_podcast": "msp_official",
                "ravdess": "ravdess_6fold", "deeptalkemotions_crema_d": "fixed", "nemo": "loso"}


def _emodb(root: Path, request: pytest.FixtureRequest) -> Path:
    tree = request.getfixturevalue("emodb_tree")  # tests/conftest.py: tmp_path / "emodb"
    assert tree == root, f"data.root {root} is not where the emodb_tree fixture writes ({tree})"
    return root


#: loader class name -> builder(root, request) writing a fixture tree in that corpus's layout.
BUILDERS: dict[str, Callable[[Path, pytest.FixtureRequest], Any]] = {
    "CremaDCorpus": lambda root, _: build_crema_d(root),
    "IemocapCorpus": lambda root, _: build_iemocap(root),
    "MspPodcastCorpus": lambda root, _: build_msp_podcast(root, layout="current"),
    "RavdessCorpus": lambda root, _: build_ravdess(root),
    "NemoCorpus": lambda root, _: build_nemo(root),
    "EmoDBCorpus": _emodb,
    "EmbeddingArrayCorpus": lambda root, _: build_embedding_arrays(root),
    "KaldiCorpus": lambda root, _: build_kaldi(root),
    "VoxCeleb1Corpus": lambda root, _: build_voxceleb1(root),
    "VoxCeleb2Corpus": lambda root, _: build_voxceleb2(root, seconds=0.1),
    "LibriSpeechCorpus": lambda root, _: build_librispeech(root),
    "FolderCorpus": lambda root, _: build_label_folders(root),
    "ManifestCorpus": lambda path, _: build_user_manifest(path),
}


def build_tree(loader_cfg: DictConfig, request: pytest.FixtureRequest) -> None:
    """Write the fixture tree(s) a resolved ``data.loader`` config reads (each part of a mix)."""
    cls = loader_cfg["_target_"].rsplit(".", 1)[-1]
    if cls == "PretrainMixCorpus":
        for part in loader_cfg["parts"]:
            build_tree(part, request)
        return
    assert cls in BUILDERS, f"no fixture builder for loader {cls}: add one to BUILDERS"
    BUILDERS[cls](Path(loader_cfg["root"] if "root" in loader_cfg else loader_cfg["path"]), request)


@pytest.fixture(scope="module")
def hydra_conf():
    """Compose like ``@hydra.main`` does: PROJECT_ROOT set (the entry scripts set it), the Hydra
    config registered so ``${hydra:...}`` resolves, ``paths.output_dir`` overridden (the run dir
    exists only inside an app run)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROJECT_ROOT", str(PROJECT))
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            def make(config_name: str, overrides: list[str], tmp: Path) -> DictConfig:
                cfg = compose(config_name=config_name, return_hydra_config=True,
                              overrides=[*overrides, f"paths.data_dir={tmp}",
                                         f"paths.output_dir={tmp / 'out'}"])
                HydraConfig.instance().set_config(cfg)
                with open_dict(cfg):
                    del cfg["hydra"]
                OmegaConf.resolve(cfg)  # every interpolation must resolve
                return cfg

            try:
                yield make
            finally:
                HydraConfig.instance().cfg = None  # type: ignore[assignment]


def _choice(cfg: DictConfig, key: str) -> tuple[str, str | None]:
    return cfg[key]["_target_"], cfg[key].get("name")


def _protocol_file(name: str) -> DictConfig:
    return OmegaConf.load(CONF / "protocol" / f"{name}.yaml")


def test_options_found():
    assert {"crema_d", "iemocap", "msp_podcast", "ravdess", "emodb", "voxceleb1", "voxceleb2", "librispeech",
            "pretrain_mix", "nemo"} <= set(DATA_OPTIONS)
    assert {"loso", "group_kfold", "fixed", "actor_kfold", "crema_d_paper", "leave_one_session_out",
            "iemocap_paper", "msp_official", "msp_paper", "ravdess_6fold"} <= set(PROTOCOL_OPTIONS)


@pytest.mark.parametrize("name", DATA_OPTIONS)
def test_data_option_composes_and_loads_a_fixture(name, hydra_conf, tmp_path, request):
    cfg = hydra_conf("evaluate", [f"data={name}"], tmp_path)
    assert cfg.data.name == name
    build_tree(cfg.data.loader, request)
    loader = instantiate(cfg.data.loader)
    utts = loader.scan()
    assert utts and all(u.id and u.speaker for u in utts)
    assert isinstance(instantiate(cfg.protocol, _convert_="all"), Protocol)
    if name in OWN_PROTOCOL:
        own = _protocol_file(OWN_PROTOCOL[name])
        assert _choice(cfg, "protocol") == (own["_target_"], own.get("name"))
    else:
        assert _choice(cfg, "protocol") == _choice(hydra_conf("evaluate", [], tmp_path), "protocol")

    # a protocol on the command line wins over the data option's own choice, if any
    for other in ("fixed", "leave_one_session_out"):
        chosen = hydra_conf("evaluate", [f"data={name}", f"protocol={other}"], tmp_path)
        assert _choice(chosen, "protocol") == (_protocol_file(other)["_target_"], _protocol_file(other).get("name"))

    train = hydra_conf("train", [f"data={name}"], tmp_path)
    assert train.data == cfg.data
    assert type(instantiate(train.data.loader)) is type(loader)


@pytest.mark.parametrize("name", PROTOCOL_OPTIONS)
def test_protocol_option_composes_and_instantiates(name, hydra_conf, tmp_path):
    cfg = hydra_conf("evaluate", [f"protocol={name}"], tmp_path)
    proto = instantiate(cfg.protocol, _convert_="all")
    assert isinstance(proto, Protocol) and proto.speaker_independent
    assert proto.name == (_protocol_file(name).get("name") or type(proto).name)
    assert proto.describe()["name"] == proto.name


def test_msp_podcast_paper_experiment(hydra_conf, tmp_path):
    cfg = hydra_conf("evaluate", ["experiment=msp_podcast_paper"], tmp_path)
    assert (cfg.data.name, cfg.protocol.name, cfg.task.name) == ("msp_podcast", "msp_paper", "er")
    assert cfg.classifier.C == 100 and cfg.classifier.gamma == 0.1 and cfg.classifier.balance is False
    assert instantiate(cfg.protocol, _convert_="all").require == {"release": "1.8"}
    balanced = hydra_conf("evaluate", ["experiment=msp_podcast_paper", "classifier.balance=true"], tmp_path)
    assert balanced.classifier.balance is True and balanced.classifier.C == 100


def test_recommended_experiment_is_what_the_readme_says(hydra_conf, tmp_path):
    """GE2E, per-speaker mean, RBF SVM tuned by nested search; any corpus and head can still be set."""
    cfg = hydra_conf("evaluate", ["experiment=recommended", "data=nemo"], tmp_path)
    assert cfg.encoder._target_.endswith("GE2EEncoder") and (cfg.classifier.name, cfg.data.name) == ("svm", "nemo")
    assert cfg.features.per_speaker == "mean" and cfg.tuning.enabled is True
    other = hydra_conf("evaluate", ["experiment=recommended", "classifier=logreg"], tmp_path)
    assert other.classifier.name == "logreg" and other.features.per_speaker == "mean"
