"""The corpus protocols (conf/protocol/*.yaml) on loader output from fixture trees in the real
layouts: IEMOCAP sessions, the CREMA-D actor splits, MSP-Podcast's official partitions, RAVDESS
actor folds, EmoDB LOSO, and the split files that name a run's exact folds."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from corpora.emotion_fixtures import (CREMA_ACTORS, CREMA_FEMALE, MSP_EXTRA_ROWS, RAVDESS_ACTORS, build_crema_d,
                                      build_iemocap, build_msp_podcast, build_ravdess)
from deeptalk_ser.data.corpora.crema_d import CremaDCorpus
from deeptalk_ser.data.corpora.emodb import EmoDBCorpus
from deeptalk_ser.data.corpora.iemocap import IemocapCorpus
from deeptalk_ser.data.corpora.msp_podcast import MspPodcastCorpus
from deeptalk_ser.data.corpora.ravdess import RavdessCorpus
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.evaluation.protocols import (FixedSplitProtocol, LeaveOneGroupOutProtocol, SpeakerLeakError,
                                               check_disjoint, group_values, split_hash, write_split_file)

CONF = Path(__file__).resolve().parents[1] / "conf"


def protocol(name: str, global_seed: int = 0, **overrides):
    """``conf/protocol/<name>.yaml`` instantiated as evaluate does (``${seed}`` = ``global_seed``);
    ``overrides`` set protocol keys like ``protocol.<key>=<value>`` on the command line."""
    cfg = OmegaConf.create({"seed": global_seed, "protocol": OmegaConf.load(CONF / "protocol" / f"{name}.yaml")})
    for key, value in overrides.items():
        cfg.protocol[key] = value
    return instantiate(cfg.protocol, _convert_="all")


def er_select(utts):
    """The paper's 4-class task (conf/task/er.yaml): angry, sad, happy (+excited), neutral."""
    task = OmegaConf.load(CONF / "task" / "er.yaml")
    return instantiate(task.labels if "labels" in task else task, _convert_="all").select(utts)


def assert_sound(folds, utts, speaker_independent=True):
    """Train and test never share a row, and (speaker-independent) never a speaker."""
    speakers = group_values(utts, "speaker")
    for f in folds:
        assert not set(f.train.tolist()) & set(f.test.tolist())
        assert check_disjoint(f, speakers, speaker_independent) == []


def each_row_tested_once(folds, n):
    counts = Counter(int(r) for f in folds for r in f.test)
    return sorted(counts) == list(range(n)) and set(counts.values()) == {1}


def values(utts, rows, key):
    return {str(v) for v in group_values([utts[int(r)] for r in rows], key)}


# --------------------------------------------------------------------------------- trees
@pytest.fixture(scope="module")
def iemocap_utts(tmp_path_factory) -> list[Utterance]:
    return IemocapCorpus(build_iemocap(tmp_path_factory.mktemp("iemocap") / "IEMOCAP_full_release")).scan()


@pytest.fixture(scope="module")
def crema_utts(tmp_path_factory) -> list[Utterance]:
    return CremaDCorpus(build_crema_d(tmp_path_factory.mktemp("crema") / "CREMA-D", actors=CREMA_ACTORS)).scan()


@pytest.fixture(scope="module")
def msp_roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("msp")
    return {layout: build_msp_podcast(base / layout, layout=layout, extra_rows=MSP_EXTRA_ROWS)
            for layout in ("1.8", "current")}


@pytest.fixture(scope="module")
def ravdess_utts(tmp_path_factory) -> list[Utterance]:
    return RavdessCorpus(build_ravdess(tmp_path_factory.mktemp("ravdess") / "RAVDESS", actors=RAVDESS_ACTORS)).scan()


# ------------------------------------------------------------------------------- IEMOCAP
def test_iemocap_leave_one_session_out(iemocap_utts):
    utts, fine = er_select(iemocap_utts)
    proto = protocol("leave_one_session_out")
    folds = proto.folds(utts, fine)
    assert proto.name == "leave_one_session_out" and len(folds) == 5
    assert [f.name for f in folds] == [f"session={s}" for s in range(1, 6)]
    for s, f in enumerate(folds, 1):
        assert values(utts, f.test, "session") == {str(s)}
        assert values(utts, f.train, "session") == {str(x) for x in range(1, 6)} - {str(s)}
        assert values(utts, f.test, "speaker") <= {f"Ses0{s}F", f"Ses0{s}M"}
    assert each_row_tested_once(folds, len(utts))
    assert_sound(folds, utts)
    assert any(u.label == "excited" for u in utts)  # kept: the task merges excited into happy


def test_iemocap_leave_one_speaker_out_is_ten_folds(iemocap_utts):
    folds = protocol("loso").folds(iemocap_utts, np.array([u.label for u in iemocap_utts], dtype=object))
    assert [f.name for f in folds] == [f"speaker=Ses0{s}{g}" for s in range(1, 6) for g in "FM"]
    assert_sound(folds, iemocap_utts)


def test_iemocap_paper_tests_session_3_only(iemocap_utts):
    utts, fine = er_select(iemocap_utts)
    proto = protocol("iemocap_paper")
    (fold,) = proto.folds(utts, fine)
    assert (proto.name, fold.name) == ("iemocap_paper", "session=3")
    assert values(utts, fold.test, "session") == {"3"}
    assert values(utts, fold.train, "session") == {"1", "2", "4", "5"}
    assert len(fold.train) + len(fold.test) == len(utts)
    assert_sound([fold], utts)
    # the same rows as leave_one_session_out's third fold
    loso3 = protocol("leave_one_session_out").folds(utts, fine)[2]
    assert fold.test.tolist() == loso3.test.tolist() and fold.train.tolist() == loso3.train.tolist()


# ------------------------------------------------------------------------------- CREMA-D
def _actor_sides(utts, fold):
    return values(utts, fold.train, "speaker"), values(utts, fold.test, "speaker")


def test_crema_d_paper_split_is_actor_disjoint_70_30_and_deterministic(crema_utts):
    utts, fine = er_select(crema_utts)
    proto = protocol("crema_d_paper", global_seed=123)  # the global seed does not move the paper's split
    (fold,) = proto.folds(utts, fine)
    train, test = _actor_sides(utts, fold)
    assert proto.name == "crema_d_paper" and proto.seed == 600
    assert (len(train), len(test)) == (63, 28) and not train & test
    assert train | test == {str(a) for a in CREMA_ACTORS}
    assert len(fold.test) / len(utts) == pytest.approx(28 / 91)  # every fixture actor has 4 ER clips
    assert_sound([fold], utts)
    (again,) = protocol("crema_d_paper").folds(list(utts), fine)
    assert again.test.tolist() == fold.test.tolist() and again.train.tolist() == fold.train.tolist()
    (other,) = protocol("crema_d_paper", seed=601).folds(utts, fine)  # protocol.seed=601: another draw
    assert _actor_sides(utts, other)[1] != test


def test_crema_d_paper_split_is_the_papers_intended_draw(crema_utts):
    """The actors scikit-learn's train_test_split(range(1001, 1092), test_size=0.3,
    random_state=600) picks (the paper's call), independent of which actors a run holds."""
    sklearn_model_selection = pytest.importorskip("sklearn.model_selection")
    sk_train, sk_test = sklearn_model_selection.train_test_split(list(range(1001, 1092)), test_size=0.3,
                                                                 random_state=600)
    utts, fine = er_select(crema_utts)
    (fold,) = protocol("crema_d_paper").folds(utts, fine)
    assert _actor_sides(utts, fold) == ({str(a) for a in sk_train}, {str(a) for a in sk_test})
    # drop 10 test actors and 10 train actors: the others keep their side (population pinned)
    gone = {str(a) for a in sorted(sk_test)[:10] + sorted(sk_train)[:10]}
    some = [u for u in utts if u.speaker not in gone]
    (fold2,) = protocol("crema_d_paper").folds(some, np.array([u.label for u in some], dtype=object))
    assert _actor_sides(some, fold2) == ({str(a) for a in sk_train} - gone, {str(a) for a in sk_test} - gone)


def test_crema_d_paper_refuses_an_actor_outside_the_population(crema_utts):
    stranger = Utterance(id="2001_DFA_ANG_XX", path="x.wav", speaker="2001", label="angry")
    with pytest.raises(ValueError, match="2001"):
        protocol("crema_d_paper").folds([*crema_utts, stranger], np.array(["angry"] * (len(crema_utts) + 1)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crema_d_actor_kfold_stratified_by_sex(crema_utts, seed):
    utts, fine = er_select(crema_utts)
    proto = protocol("actor_kfold", global_seed=seed)
    folds = proto.folds(utts, fine)
    assert proto.name == "actor_kfold" and len(folds) == 5
    assert each_row_tested_once(folds, len(utts))
    assert_sound(folds, utts)
    female = {str(a) for a in CREMA_FEMALE}
    per_fold = [Counter("f" if a in female else "m" for a in values(utts, f.test, "speaker")) for f in folds]
    assert sum(c["m"] for c in per_fold) == 48 and sum(c["f"] for c in per_fold) == 43
    assert {c["m"] for c in per_fold} <= {9, 10} and {c["f"] for c in per_fold} <= {8, 9}  # 48/5, 43/5
    assert {sum(c.values()) for c in per_fold} <= {18, 19}
    # the loader's gender (VideoDemographics Sex) is what was stratified
    assert {u.speaker for u in utts if u.extra["gender"] == "f"} == female


# --------------------------------------------------------------------------- MSP-Podcast
def test_msp_official_split_and_er_classes(msp_roots):
    raw = MspPodcastCorpus(msp_roots["current"]).scan()
    utts, fine = er_select(raw)
    excluded = {u.id for u in raw if u.extra["label_raw"] in ("X", "O", "U", "C")}
    assert excluded and not excluded & {u.id for u in utts}
    assert set(fine.tolist()) == {"angry", "happy", "sad", "neutral"}
    proto = protocol("msp_official")
    (fold,) = proto.folds(utts, fine)
    assert (proto.name, fold.name) == ("msp_official", "test1")
    assert values(utts, fold.train, "split") == {"train"} and values(utts, fold.test, "split") == {"test1"}
    dev = {i for i, u in enumerate(utts) if u.split == "dev"}
    assert dev and not dev & set(fold.train.tolist() + fold.test.tolist())  # Development: held out, unused
    assert_sound([fold], utts)
    unknown = [u.speaker for u in utts if not u.extra["speaker_known"]]
    assert len(unknown) == len(set(unknown)) >= 4 and all(s.startswith("unknown:") for s in unknown)
    # merged into one "Unknown" speaker they would seem to cross Train and Test1
    merged = np.array([("Unknown" if not u.extra["speaker_known"] else u.speaker) for u in utts], dtype=object)
    with pytest.raises(SpeakerLeakError, match="Unknown"):
        check_disjoint(fold, merged, speaker_independent=True)


def test_msp_official_test1_and_test2_as_separate_folds(msp_roots):
    utts, fine = er_select(MspPodcastCorpus(msp_roots["current"]).scan())
    folds = protocol("msp_official", test_splits=["test1", "test2"], per_test_split=True).folds(utts, fine)
    assert [f.name for f in folds] == ["test1", "test2"]
    assert folds[0].train.tolist() == folds[1].train.tolist()
    assert values(utts, folds[1].test, "split") == {"test2"}
    assert_sound(folds, utts)


def test_msp_paper_needs_release_1_8(msp_roots):
    utts, fine = er_select(MspPodcastCorpus(msp_roots["1.8"]).scan())
    proto = protocol("msp_paper")
    (fold,) = proto.folds(utts, fine)
    assert (proto.name, fold.name) == ("msp_paper", "test1")
    (official,) = protocol("msp_official").folds(utts, fine)
    assert fold.test.tolist() == official.test.tolist() and fold.train.tolist() == official.train.tolist()
    newer, fine_newer = er_select(MspPodcastCorpus(msp_roots["current"]).scan())  # release unknown
    with pytest.raises(ValueError, match=r"msp_paper requires release='1\.8'"):
        proto.folds(newer, fine_newer)
    tagged, fine_tagged = er_select(MspPodcastCorpus(msp_roots["current"], release="1.8").scan())
    assert len(proto.folds(tagged, fine_tagged)) == 1


def test_loso_refuses_too_many_groups(msp_roots):
    utts, fine = er_select(MspPodcastCorpus(msp_roots["current"]).scan())
    with pytest.raises(ValueError, match="max_groups"):
        protocol("loso", max_groups=5).folds(utts, fine)


# ------------------------------------------------------------------------------- RAVDESS
def test_ravdess_six_actor_folds(ravdess_utts):
    utts, fine = er_select(ravdess_utts)
    proto = protocol("ravdess_6fold")
    folds = proto.folds(utts, fine)
    assert proto.name == "ravdess_6fold" and len(folds) == 6
    assert each_row_tested_once(folds, len(utts))
    assert_sound(folds, utts)
    tested = [values(utts, f.test, "speaker") for f in folds]
    assert sorted(a for t in tested for a in t) == [f"{a:02d}" for a in RAVDESS_ACTORS]
    for t in tested:  # 2 male (odd) + 2 female (even) actors per fold
        assert sorted(int(a) % 2 for a in t) == [0, 0, 1, 1]
    # = protocol=group_kfold protocol.k=6 protocol.stratify_by=gender
    same = protocol("group_kfold", k=6, stratify_by="gender").folds(utts, fine)
    assert [f.test.tolist() for f in same] == [f.test.tolist() for f in folds]


# --------------------------------------------------------------------------------- EmoDB
def test_emodb_loso(emodb_tree):
    utts, fine = er_select(EmoDBCorpus(emodb_tree).scan())
    folds = protocol("loso").folds(utts, fine)
    assert [f.name for f in folds] == ["speaker=03", "speaker=08", "speaker=09"]
    assert each_row_tested_once(folds, len(utts))
    assert_sound(folds, utts)


# ----------------------------------------------------------------------------- split files
def test_split_file_names_the_exact_folds(iemocap_utts, tmp_path):
    utts, fine = er_select(iemocap_utts)
    proto = protocol("leave_one_session_out")
    folds = proto.folds(utts, fine)
    digest = write_split_file(tmp_path / "splits.json", proto, folds, utts)
    doc = json.loads((tmp_path / "splits.json").read_text(encoding="utf-8"))
    assert digest.startswith("sha256:") and doc["hash"] == digest == split_hash(doc["folds"])
    assert doc["protocol"] == "leave_one_session_out" and doc["protocol_config"]["group_by"] == "session"
    assert (doc["n_folds"], doc["n_utterances"]) == (5, len(utts))
    ids = {u.id for u in utts}
    for rec, f in zip(doc["folds"], folds):
        assert rec["name"] == f.name and rec["test"] == sorted(utts[int(i)].id for i in f.test)
        assert set(rec["train"]) | set(rec["test"]) == ids
        assert (rec["n_train"], rec["n_test"]) == (len(f.train), len(f.test))
    # manifest order does not change the hash; another split does
    rev = utts[::-1]
    rev_fine = np.array([fine[len(utts) - 1 - i] for i in range(len(utts))], dtype=object)
    assert write_split_file(tmp_path / "rev.json", proto, proto.folds(rev, rev_fine), rev) == digest
    paper = protocol("iemocap_paper")
    assert write_split_file(tmp_path / "paper.json", paper, paper.folds(utts, fine), utts) != digest
    # the hash covers the folds: a tampered file no longer matches it
    doc["folds"][0]["test"] = doc["folds"][0]["test"][1:]
    assert split_hash(doc["folds"]) != doc["hash"]


def test_split_hash_follows_the_crema_d_draw(crema_utts, tmp_path):
    utts, fine = er_select(crema_utts)
    paper = protocol("crema_d_paper")
    a = write_split_file(tmp_path / "a.json", paper, paper.folds(utts, fine), utts)
    other = protocol("crema_d_paper", seed=601)
    assert write_split_file(tmp_path / "b.json", paper, paper.folds(utts, fine), utts) == a
    assert write_split_file(tmp_path / "c.json", other, other.folds(utts, fine), utts) != a


# ------------------------------------------------------------------------------- protocol details
def test_fixed_split_refuses_a_split_on_both_sides():
    with pytest.raises(ValueError, match="both"):
        FixedSplitProtocol(train_splits=["train", "test1"], test_splits=["test1"])


def test_loso_default_has_a_fold_cap_that_crema_d_fits(crema_utts):
    assert protocol("loso").max_groups >= len(CREMA_ACTORS)
    assert isinstance(protocol("loso"), LeaveOneGroupOutProtocol)
