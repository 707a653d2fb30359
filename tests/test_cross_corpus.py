"""Cross-corpus evaluation (``evaluate.py data=A test_data=B``) and the train x test corpus matrix
of a sweep, end to end on generated corpora: an EmoDB-layout copy and a folder-per-label corpus
whose emotions differ the same way (f0 steps), so a head trained on one must transfer."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
import soundfile as sf

from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.evaluation.cross_corpus import combine, shared_labels
from deeptalk_ser.evaluation.labels import EmotionLabels
from deeptalk_ser.utils.corpus_matrix import write_corpus_matrix
from deeptalk_ser.utils.reporting import collect_runs
from deeptalk_ser.utils.errors import ConfigError
from e2e_utils import read_json, run_script, speech_emodb_tree
from synthetic_audio import speech_like
from wandb_records import find_offline_runs

pytestmark = pytest.mark.e2e
FAST = ("experiment=egemaps_baseline", "logger=csv", "intervals.n_resamples=200")
ER = EmotionLabels("er", ["angry", "sad", "happy", "neutral"], {k: k for k in ("angry", "sad", "happy", "neutral")})


def folder_tree(root: Path, speakers=("s1", "s2", "s3"), labels=("angry", "sad", "happy", "neutral"),
                takes: int = 3, sr: int = 16000) -> Path:
    """``data=folder`` layout, f0 by emotion as in :func:`speech_emodb_tree` (W/T/F/N order)."""
    steps = {"angry": 0, "sad": 1, "happy": 2, "neutral": 3}
    for s_i, spk in enumerate(speakers):
        for lab in labels:
            for t in range(takes):
                y = speech_like(1.6 + 0.1 * t, sr, f0=100.0 + 4 * s_i + 2 + 40 * steps[lab])
                p = root / lab / f"{spk}_{t}.wav"
                p.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(p), y, sr)
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``paths.data_dir`` holding ``emodb/`` and ``my_recordings/`` (the two options' default roots)."""
    d = tmp_path_factory.mktemp("data")
    speech_emodb_tree(d / "emodb")
    folder_tree(d / "my_recordings")
    return d


def test_train_on_one_corpus_test_on_another(data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_script("evaluate.py", "data=emodb", "test_data=folder", f"paths.data_dir={data_dir}",
                      f"hydra.run.dir={run}", "experiment=egemaps_baseline", "intervals.n_resamples=200",
                      tmp=tmp_path)  # default loggers: W&B offline + CSV
    res = read_json(run / "results.json")
    (wb,) = find_offline_runs(run)
    assert (wb.config["data.name"], wb.config["test_data.name"]) == ("emodb", "folder")
    assert (wb.config["corpora.train_data"], wb.config["corpora.test_data"]) == ("emodb", "folder")
    assert wb.summary["test/ua"] == pytest.approx(res["ua"]) and "test/ua_ci_low" in wb.summary
    assert (res["train_data"], res["test_data"], res["protocol"], res["data"]) == ("emodb", "folder", "cross_corpus",
                                                                                   "emodb->folder")
    assert res["n_train"] == 4 * 3 * 4 and res["n_test"] == 3 * 4 * 3 and res["n_folds"] == 1
    assert res["labels_left_out"] == {"boredom": 12}  # EmoDB's boredom is not an ER class
    lo, hi = res["ci95"]["ua"]
    assert lo <= res["ua"] <= hi and hi - lo > 0  # resampled over the 3 test speakers
    assert res["ua"] >= 0.6, res["ua"]  # transfers (chance 0.25)
    rows = list(csv.DictReader((run / "predictions.csv").open()))
    assert len(rows) == res["n_test"] and {r["fold"] for r in rows} == {"emodb->folder"}
    assert {r["speaker"] for r in rows} == {"s1", "s2", "s3"}  # only B's utterances are scored
    split = read_json(run / "splits.json")["folds"][0]
    assert all(i[:2] in ("03", "08", "09", "10") for i in split["train"])  # trained on A only
    # each side through its own store, reused by a second run
    assert read_json(run / "extract_summary_test.json")["n_embedded"] == res["n_test"]
    run2 = tmp_path / "run2"
    run_script("evaluate.py", "data=emodb", "test_data=folder", f"paths.data_dir={data_dir}", f"hydra.run.dir={run2}",
               *FAST, tmp=tmp_path)
    assert read_json(run2 / "extract_summary_test.json")["n_embedded"] == 0
    assert read_json(run2 / "results.json")["ua"] == res["ua"]
    assert "emodb->folder" in proc.stdout


@pytest.mark.slow  # covered in the default run by in-process checks of shared classes in this file
def test_classes_one_side_lacks_are_left_out_and_counted(data_dir: Path, tmp_path: Path) -> None:
    no_sad = folder_tree(tmp_path / "no_sad", labels=("angry", "happy", "neutral"), takes=2)
    run = tmp_path / "run"
    run_script("evaluate.py", "data=emodb", "test_data=folder", f"test_data.root={no_sad}", "task=ed",
               f"paths.data_dir={data_dir}", f"hydra.run.dir={run}", *FAST, tmp=tmp_path)
    res = read_json(run / "results.json")
    assert res["classes_left_out"] == {"data=emodb": {"sad": 12}}
    assert res["n_train"] == 36 and res["n_test"] == 18 and res["classes"] == ["neutral", "emotional"]


def test_two_copies_sharing_speakers_are_refused(data_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(data_dir / "emodb", tmp_path / "emodb_copy")
    proc = run_script("evaluate.py", "data=emodb", "test_data=emodb", f"test_data.root={copy}", "test_data.name=emodb_copy",
                      f"paths.data_dir={data_dir}", f"hydra.run.dir={tmp_path / 'run'}", *FAST, tmp=tmp_path,
                      check=False, env={"HYDRA_FULL_ERROR": "0"})
    assert proc.returncode == 1
    assert "test_data" in proc.stderr and "sharing 4 speaker(s) (03, 08, 09, 10)" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "cache" / "embeddings").exists()  # refused before any extraction


@pytest.mark.slow  # covered in the default run by a sweep end to end: tests/test_e2e_evaluate.py
def test_sweep_writes_the_corpus_matrix(data_dir: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_script("evaluate.py", "-m", "data=emodb,folder", "test_data=emodb,folder", f"paths.data_dir={data_dir}",
                      f"hydra.sweep.dir={sweep}", *FAST, tmp=tmp_path)
    rows = list(csv.DictReader((sweep / "matrix.csv").open()))
    cells = {(r["train_data"], r["test_data"]): r for r in rows}
    assert set(cells) == {("emodb", "emodb"), ("emodb", "folder"), ("folder", "emodb"), ("folder", "folder")}
    assert cells[("emodb", "emodb")]["protocol"] == "loso" and cells[("emodb", "folder")]["protocol"] == "cross_corpus"
    for (a, b), r in cells.items():
        res = read_json(sweep / r["run"] / "results.json")
        assert float(r["ua"]) == pytest.approx(res["ua"]) and float(r["ua_ci_low"]) == pytest.approx(res["ci95"]["ua"][0])
    md = (sweep / "matrix.md").read_text()
    assert "| train \\ test | emodb | folder |" in md and f"| folder | {float(cells[('folder', 'emodb')]['ua']):.3f} [" in md
    assert (sweep / "matrix.png").stat().st_size > 5000
    assert "train x test corpus matrix" in proc.stdout


# ----------------------------------------------------------------------------- units, no audio
def test_shared_labels_keeps_what_both_sides_have() -> None:
    a = np.array(["angry", "sad", "sad", "happy", "neutral"], dtype=object)
    b = np.array(["angry", "happy", "neutral"], dtype=object)
    labels, left = shared_labels(ER, {"data=A": a, "test_data=B": b})
    assert labels.classes == ["angry", "happy", "neutral"] and "sad" not in labels.label_map
    assert left == {"data=A": {"sad": 2}}
    with pytest.raises(ConfigError, match="test_data.*2 classes"):
        shared_labels(ER, {"data=A": np.array(["angry", "sad"], dtype=object), "test_data=B": b})


def test_combine_keeps_corpora_speakers_apart() -> None:
    mk = lambda spk, i: Utterance(id=f"u{i}", path=f"{i}.wav", speaker=spk, label="angry")  # noqa: E731
    utts, speakers, fold = combine("A", [mk("03", 0), mk("08", 1)], "B", [mk("03", 2)])
    assert list(speakers) == ["A:03", "A:08", "B:03"]
    assert fold.train.tolist() == [0, 1] and fold.test.tolist() == [2] and fold.name == "A->B"


def test_matrix_is_only_written_for_cross_corpus_sweeps(tmp_path: Path) -> None:
    def job(name: str, a: str, b: str, ua: float) -> None:
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(
            {"task": "er", "encoder": "ge2e", "classifier": "svm", "train_data": a, "test_data": b, "ua": ua,
             "ci95": {"ua": [ua - 0.1, ua + 0.1]}, "folds": [{"n_test": 5}]}))

    job("0", "A", "A", 0.8)
    assert write_corpus_matrix(tmp_path, collect_runs(tmp_path)) is None  # within-corpus only: no matrix
    job("1", "A", "B", 0.4)
    md = write_corpus_matrix(tmp_path, collect_runs(tmp_path))
    assert "| A | 0.800 [0.700, 0.900] | 0.400 [0.300, 0.500] |" in md and (tmp_path / "matrix.md").read_text() == md
    assert [r["run"] for r in csv.DictReader((tmp_path / "matrix.csv").open())] == ["0", "1"]


@pytest.mark.slow  # covered in the default run by crossing end to end stays in test_train_on_one_corpus_test_on_another
def test_any_head_and_save_model_fit_on_the_training_corpus_only(data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_script("evaluate.py", "data=folder", "test_data=emodb", "classifier=hierarchical", "save_model=true",
               f"paths.data_dir={data_dir}", f"hydra.run.dir={run}", *FAST, tmp=tmp_path)
    res = read_json(run / "results.json")
    assert (res["classifier"], res["n_train"], res["n_test"]) == ("hierarchical", 36, 48)
    assert read_json(Path(res["model"]) / "head.json")["n_train"] == 36  # not A + B


def test_other_tasks_refuse_test_data(data_dir: Path, tmp_path: Path) -> None:
    proc = run_script("evaluate.py", "task=emotion_shift", "test_data=folder", f"paths.data_dir={data_dir}",
                      f"hydra.run.dir={tmp_path / 'run'}", "logger=none", tmp=tmp_path, check=False,
                      env={"HYDRA_FULL_ERROR": "0"})
    assert proc.returncode == 1 and "test_data: a train corpus / test corpus run is task=er or task=ed" in proc.stderr


@pytest.mark.slow  # covered in the default run by fusion end to end: tests/test_fusion.py; crossing: test_train_on_one_corpus_test_on_another
def test_fused_encoder_crosses_corpora(data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_script("evaluate.py", "data=emodb", "test_data=folder", "encoder=fusion", "features.per_speaker=mean",
               f"paths.data_dir={data_dir}", f"hydra.run.dir={run}", "logger=csv", "intervals.n_resamples=200",
               tmp=tmp_path)
    res = read_json(run / "results.json")
    assert res["encoder"] == "fusion(ge2e+egemaps)" and res["n_test"] == 36 and res["ua"] >= 0.5, res["ua"]
    assert set(read_json(run / "extract_summary_test.json")["parts"]) == {"speaker", "features"}


def test_another_copy_under_the_same_name_is_refused(data_dir: Path, tmp_path: Path) -> None:
    """The name is the cache folder: two copies under one name would overwrite each other's manifest."""
    from deeptalk_ser.evaluation.cross_corpus import check_names

    cfg = OmegaConf.create({"data": {"name": "emodb", "loader": {"root": "/a"}},
                            "test_data": {"name": "emodb", "loader": {"root": "/b"}}})
    with pytest.raises(ConfigError, match="test_data.name: test_data is another copy of emodb .* test_data.name=emodb_test"):
        check_names(cfg)
    cfg.test_data.name = "emodb_test"
    check_names(cfg)  # named apart: accepted
    cfg.test_data = cfg.data  # the matrix's diagonal: the same corpus, a within-corpus run
    check_names(cfg)
