"""Labels of a user's corpus reach the tasks whatever their case (``Angry/`` is angry), label_map
renames the rest and is settable from the command line; labels a task does not use are counted
and named; a task class without utterances is refused before extraction (ED: explained)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import open_dict

from conftest import speech_like, write_wav_file
from deeptalk_ser.data.corpora.user import FolderCorpus, ManifestCorpus
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.evaluation.labels import EmotionLabels
from deeptalk_ser.utils.errors import ConfigError

PROJECT = Path(__file__).resolve().parents[1]
FOLDERS = ("Angry", "Sad", "happy", "neutral", "bored")  # as real corpora ship them, plus one no task uses
SPEAKERS, TAKES = ("spk0", "spk1", "spk2"), 2
ER = dict(name="er", classes=["angry", "sad", "happy", "neutral"],
          label_map={"angry": "angry", "sad": "sad", "happy": "happy", "neutral": "neutral", "excited": "happy"})
ED = dict(name="ed", classes=["neutral", "emotional"], label_map=ER["label_map"],
          coarse_map={"angry": "emotional", "sad": "emotional", "happy": "emotional", "neutral": "neutral"})


def label_tree(root: Path, seconds: float = 1.0) -> Path:
    """``<root>/<Folder>/<speaker>_take<n>.wav``: speech-like audio (survives any VAD), f0 by speaker and folder."""
    for e_i, folder in enumerate(FOLDERS):
        for s_i, spk in enumerate(SPEAKERS):
            for t in range(TAKES):
                p = root / folder / f"{spk}_take{t}.wav"
                p.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(p), speech_like(seconds + 0.1 * t, 16000, f0=100.0 + 15 * s_i + 30 * e_i), 16000)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return label_tree(tmp_path_factory.mktemp("labels") / "recordings")


N_PER_FOLDER = len(SPEAKERS) * TAKES


# -- loaders -------------------------------------------------------------------------------------

def test_folder_labels_match_case_insensitively(tree: Path) -> None:
    utts = FolderCorpus(tree).scan()
    assert Counter(u.label for u in utts) == {f.lower(): N_PER_FOLDER for f in FOLDERS}
    assert {u.extra["label_raw"] for u in utts if u.label == "angry"} == {"Angry"}  # the folder as found


def test_manifest_labels_case_blanks_and_label_map(tmp_path: Path) -> None:
    rows = [("ANGRY", "angry"), (" Sad ", "sad"), ("Wut", "angry"), ("Trauer", "sad"), ("angri", "angri")]
    lines = ["path,speaker,label"]
    for i, (raw, _) in enumerate(rows):
        write_wav_file(tmp_path / f"a{i}.wav", 0.2, 16000)
        lines.append(f"a{i}.wav,s{i % 2},{raw}")
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    # a key matched case-insensitively (wut) and one exactly (Trauer); an unknown label stays, lower-cased
    utts = ManifestCorpus(tmp_path / "t.csv", label_map={"wut": "angry", "Trauer": "sad"}).scan()
    assert [u.label for u in utts] == [want for _, want in rows]
    assert [u.extra["label_raw"] for u in utts] == ["ANGRY", "Sad", "Wut", "Trauer", "angri"]


def test_label_map_case_clash_refused_and_cache_key_follows_the_map(tree: Path) -> None:
    with pytest.raises(ConfigError, match="data.loader.label_map") as ei:
        FolderCorpus(tree, label_map={"Anger": "angry", "anger": "sad"})
    assert "'angry'" in ei.value.problem and "'sad'" in ei.value.problem
    same = FolderCorpus(tree, label_map={"Anger": "angry", "anger": "angry"})  # same target: no clash
    assert same.options() != FolderCorpus(tree).options() != FolderCorpus(tree, label_map={"bored": "neutral"}).options()
    assert Counter(u.label for u in FolderCorpus(tree, label_map={"BORED": "neutral"}).scan())["neutral"] == 2 * N_PER_FOLDER


# -- Hydra: label_map from the command line ---------------------------------------------------------

@pytest.fixture
def evaluate_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``evaluate`` composed as the entry script composes it (paths in ``tmp_path``)."""
    monkeypatch.setenv("PROJECT_ROOT", str(PROJECT))
    with initialize_config_dir(config_dir=str(PROJECT / "conf"), version_base="1.3"):
        def make(*overrides: str):
            cfg = compose(config_name="evaluate", return_hydra_config=True,
                          overrides=["logger=none", f"paths.cache_dir={tmp_path / 'cache'}",
                                     f"paths.output_dir={tmp_path / 'out'}", *overrides])
            HydraConfig.instance().set_config(cfg)
            with open_dict(cfg):
                del cfg["hydra"]
            return cfg
        try:
            yield make
        finally:
            HydraConfig.instance().cfg = None  # type: ignore[assignment]


@pytest.mark.parametrize("data", ["folder", "manifest"])
def test_label_map_overrides_compose(evaluate_cfg, data: str) -> None:
    whole = evaluate_cfg(f"data={data}", "data.loader.label_map={Wut: angry, Trauer: sad}")
    assert dict(whole.data.loader.label_map) == {"Wut": "angry", "Trauer": "sad"}
    one = evaluate_cfg(f"data={data}", "+data.loader.label_map.Wut=angry")
    assert dict(one.data.loader.label_map) == {"Wut": "angry"}
    both = evaluate_cfg(f"data={data}", "data.loader.label_map={Wut: angry}", "++data.loader.label_map.Wut=sad",
                        "++data.loader.label_map.Trauer=sad")
    assert dict(both.data.loader.label_map) == {"Wut": "sad", "Trauer": "sad"}
    assert evaluate_cfg(f"data={data}").data.loader.label_map is None  # the default: no renaming


def test_label_map_from_the_command_line_reaches_the_loader(evaluate_cfg, tree: Path) -> None:
    cfg = evaluate_cfg("data=folder", f"data.root={tree}", "data.loader.label_map={BORED: neutral}")
    labels = Counter(u.label for u in instantiate(cfg.data.loader).scan())
    assert labels == {"angry": N_PER_FOLDER, "sad": N_PER_FOLDER, "happy": N_PER_FOLDER, "neutral": 2 * N_PER_FOLDER}


# -- tasks: left out, missing classes, ED explained -------------------------------------------------

def _utts(labels: list[str | None]) -> list[Utterance]:
    return [Utterance(id=f"u{i}", path=f"{i}.wav", speaker=f"s{i % 3}", label=lab) for i, lab in enumerate(labels)]


def test_task_counts_left_out_labels_and_missing_classes() -> None:
    er, ed = EmotionLabels(**ER), EmotionLabels(**ED)
    utts = _utts(["angry", "bored", "angri", "bored", None, "sad", "excited", "neutral", "bored", "angri"])
    assert er.left_out(utts) == {"bored": 3, "angri": 2, "(no label)": 1}
    assert list(er.left_out(utts)) == ["bored", "angri", "(no label)"]  # most first
    _, fine = er.select(utts)
    assert er.missing_classes(fine) == [] and er.coverage_warnings(fine) == []
    _, fine = er.select(_utts(["angry", "happy", "neutral"]))
    assert er.missing_classes(fine) == ["sad"]
    assert ed.missing_classes(fine) == []
    assert ed.coverage_warnings(fine) == ["task ed class emotional has no sad utterance: it is scored on angry, happy only"]
    assert ed.missing_classes(np.array(["neutral"], dtype=object)) == ["emotional"]


def test_final_line_names_left_out_labels_and_warnings() -> None:
    from deeptalk_ser.runs.common import left_out_line

    assert left_out_line({"task": "er", "labels_left_out": {}, "warnings": []}) == ""  # clean input: unchanged
    line = left_out_line({"task": "er", "labels_left_out": {"bored": 8, "angri": 4}, "warnings": ["w1"]})
    assert line == "; left out 12 utterances with labels not in task er: bored (8), angri (4); w1"


def test_missing_class_refused_before_extraction(evaluate_cfg, tree: Path, tmp_path: Path) -> None:
    from deeptalk_ser.runs.emotion import run

    # Sad/ renamed away: ER has no sad
    cfg = evaluate_cfg("data=folder", f"data.root={tree}", "encoder=egemaps", "data.loader.label_map={sad: bored}")
    with pytest.raises(ConfigError) as ei:
        run(cfg)
    assert ei.value.key == "data.loader.label_map"
    assert "task er class sad has no folder utterance" in ei.value.problem
    assert f"bored ({2 * N_PER_FOLDER})" in ei.value.problem and "+data.loader.label_map.<label>=sad" in ei.value.problem
    # ED can be scored without sad, but not by the Sad-First head, which trains on it
    cfg = evaluate_cfg("data=folder", f"data.root={tree}", "encoder=egemaps", "data.loader.label_map={sad: bored}",
                       "task=ed", "classifier=hierarchical")
    with pytest.raises(ConfigError) as ei:
        run(cfg)
    assert ei.value.key == "classifier.first_class" and "'sad'" in ei.value.problem
    assert not (tmp_path / "cache" / "embeddings").exists()  # refused before anything was embedded


# -- end to end ---------------------------------------------------------------------------------------

@pytest.mark.e2e
def test_evaluate_folder_with_capitalised_and_unknown_labels(tree: Path, tmp_path: Path) -> None:
    from e2e_utils import read_json, run_script

    run = tmp_path / "run"
    proc = run_script("evaluate.py", "data=folder", f"data.root={tree}", "encoder=egemaps", "logger=none",
                      f"hydra.run.dir={run}", tmp=tmp_path)
    res = read_json(run / "results.json")
    assert res["class_counts"] == {c: N_PER_FOLDER for c in ("angry", "sad", "happy", "neutral")}
    assert res["labels_left_out"] == {"bored": N_PER_FOLDER}
    # no label warning; this tiny fixture may carry result-quality flags (evaluation/confounds.py)
    assert [w for w in res["warnings"] if not w.startswith(("degenerate", "UA interval"))] == []
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("results -> ") and f"left out {N_PER_FOLDER} utterances with labels not in task er: bored" in last

    # ED without sad (its folder renamed away) is scored on angry and happy, and says so
    run = tmp_path / "ed"
    proc = run_script("evaluate.py", "data=folder", f"data.root={tree}", "encoder=egemaps", "logger=none", "task=ed",
                      "data.loader.label_map={sad: bored}", f"hydra.run.dir={run}", tmp=tmp_path)
    res = read_json(run / "results.json")
    assert res["class_counts"] == {"neutral": N_PER_FOLDER, "emotional": 2 * N_PER_FOLDER}
    assert res["labels_left_out"] == {"bored": 2 * N_PER_FOLDER}
    assert [w for w in res["warnings"] if not w.startswith(("degenerate", "UA interval"))] == [
        "task ed class emotional has no sad utterance: it is scored on angry, happy only"]
    assert "emotional has no sad utterance" in proc.stdout.strip().splitlines()[-1]
