"""W&B as a lab dashboard, checked on the offline records: a multirun is one group, jobs have a
job type and override names, the config is flat, folds and the sweep summary are tables, the
confusion matrix is a plot; a resumed run reuses its W&B id."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from deeptalk_ser.utils.loggers import (RUN_ID_FILE, build_loggers, flatten_config, log_run, override_name,
                                        stable_run_id)
from wandb_records import find_offline_runs, read_offline_run

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def stop_wandb_service() -> None:
    """W&B started in this (pytest) process leaves its service address in WANDB_SERVICE, which
    every later subprocess would inherit and share (a resumed run then finds its id "in use")."""
    import wandb

    wandb.teardown()
    os.environ.pop("WANDB_SERVICE", None)


def test_flatten_and_override_names() -> None:
    assert flatten_config({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}}) == {"a.b": 1, "a.c.d": [1, 2], "e": {}}
    name = override_name(["experiment=egemaps_baseline", "task=er", "classifier=svm", "data.root=/x/emodb",
                          "paths.log_dir=/tmp/o", "logger.wandb.offline=false", "+hydra.job.foo=1"])
    assert name == "classifier=svm,experiment=egemaps_baseline,task=er"
    assert override_name([]) == "default"


def test_resumed_run_keeps_its_wandb_id(tmp_path: Path) -> None:
    first = tmp_path / "run1"
    run_id = stable_run_id(first)
    assert (first / RUN_ID_FILE).read_text().strip() == run_id
    assert stable_run_id(first) == run_id  # the same directory keeps its id
    (first / "checkpoints").mkdir()
    resumed = stable_run_id(tmp_path / "run2", resume_from=first / "checkpoints" / "last.ckpt")
    assert resumed == run_id
    assert stable_run_id(tmp_path / "run3") != run_id  # a fresh run is a fresh W&B run


def test_logged_in_process_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """build_loggers + log_run offline, read back: flat config, folds table, confusion plot, stable id."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run1 = tmp_path / "run1"
    cfg = OmegaConf.create({"task": {"name": "er"}, "classifier": {"C": 10.0, "gamma": 0.1}, "ckpt_path": None,
                            "logger": OmegaConf.load(PROJECT_ROOT / "conf" / "logger" / "wandb.yaml")})
    cfg.logger.wandb.save_dir = str(run1)
    folds = [{"name": "03", "ua": 0.5, "f1_per_class.sad": 1}, {"name": "08", "ua": 0.75, "f1_per_class.sad": 0.5}]
    try:
        log_run(build_loggers(cfg.logger), OmegaConf.to_container(cfg), {"test/ua": 0.625}, {},
                tables={"test/folds": folds},
                confusion={"key": "test/confusion_matrix", "matrix": [[3, 1], [0, 4]], "classes": ["sad", "rest"]})
    finally:
        stop_wandb_service()
    (run,) = find_offline_runs(run1)
    assert run.exited and run.run_id == (run1 / RUN_ID_FILE).read_text().strip()
    assert run.config["classifier.C"] == 10.0 and run.config["task.name"] == "er"
    assert run.summary["test/ua"] == 0.625
    folds_table = run.table("test/folds")
    assert folds_table["columns"] == ["name", "ua", "f1_per_class.sad"]
    assert [r[0] for r in folds_table["data"]] == ["03", "08"]
    assert "test/confusion_matrix" in json.dumps(run.config)  # the plot's panel spec
    cm = run.table("test/confusion_matrix_table")
    counts = {(a, p): n for a, p, n in cm["data"]}
    assert counts[("sad", "sad")] == 3 and counts[("rest", "rest")] == 4 and counts[("sad", "rest")] == 1


@pytest.mark.e2e
def test_multirun_is_one_wandb_group(tmp_path: Path) -> None:
    """The issue's acceptance: ``evaluate.py -m classifier=svm,hierarchical task=er,ed`` -> one group
    of four runs with tables and plots, plus the sweep's summary table in a run of its own."""
    from e2e_utils import run_script, speech_emodb_tree

    os.environ.pop("WANDB_SERVICE", None)  # each script its own W&B service, as for a user
    corpus = speech_emodb_tree(tmp_path / "emodb")
    sweep = tmp_path / "sweep"
    run_script("evaluate.py", "-m", "experiment=egemaps_baseline", "classifier=svm,hierarchical", "task=er,ed",
               f"data.root={corpus}", f"hydra.sweep.dir={sweep}", tmp=tmp_path)
    runs = find_offline_runs(sweep)
    assert len(runs) == 5, [r.path for r in runs]
    assert {r.group for r in runs} == {"sweep"}
    jobs = [r for r in runs if r.job_type != "summary"]
    assert sorted(r.job_type for r in jobs) == ["ed", "ed", "er", "er"]
    assert {r.name for r in jobs} == {f"classifier={c},experiment=egemaps_baseline,task={t}"
                                      for c in ("svm", "hierarchical") for t in ("er", "ed")}
    assert len({r.run_id for r in runs}) == 5
    for r in jobs:
        assert r.exited
        assert r.config["classifier.name"] == r.config["hydra_choices.classifier"]
        assert r.config["hydra_choices.task"] == r.job_type and r.config["hydra_choices.encoder"] == "egemaps"
        results = json.loads((r.path.parents[1] / "results.json").read_text())  # <job>/wandb/offline-run-*
        assert r.summary["test/ua"] == pytest.approx(results["ua"])  # the job's own score, not any number
        folds = r.table("test/folds")
        assert len(folds["data"]) == 4 and "ua" in folds["columns"]
        assert "test/confusion_matrix_table" in r.tables()  # wandb.plot.confusion_matrix's data
        assert any("confusion_matrix" in k for k in r.config)  # ... and its panel
        assert "test/confusion" in r.history_keys  # the PNG too
    (summary,) = [r for r in runs if r.job_type == "summary"]
    table = summary.table("sweep/summary")
    assert len(table["data"]) == 4 and {"run", "task", "classifier", "ua", "p_vs_best", "vs_best"} <= set(table["columns"])
    marks = table["data"]  # each task (ER, ED) has its own best job: two "best" marks
    assert [row[table["columns"].index("vs_best")] for row in marks].count("best") == 2
    assert "sweep/forest" in summary.history_keys and (sweep / "forest.png").is_file()
    assert summary.summary["best/ua"] == pytest.approx(max(r.summary["test/ua"] for r in jobs))
    assert read_offline_run(summary.path).group == "sweep"


@pytest.mark.e2e
@pytest.mark.slow  # test_resumed_run_keeps_its_wandb_id covers the id hand-over in the default run
def test_training_logs_lr_and_a_resumed_run_continues_its_wandb_run(tmp_path: Path) -> None:
    from e2e_utils import run_script, speech_kaldi_tree

    os.environ.pop("WANDB_SERVICE", None)  # each script its own W&B service, as for a user
    corpus = speech_kaldi_tree(tmp_path / "speechocean762")
    tiny = ["data=speechocean762", "training.speakers_per_batch=3", "training.utterances_per_speaker=2",
            "training.crop_frames=60", "training.batches_per_epoch=2", "training.val_speakers=3", "logger=wandb",
            "trainer.log_every_n_steps=1", f"data.root={corpus}"]
    run1, run2 = tmp_path / "run1", tmp_path / "run2"
    run_script("train.py", *tiny, "trainer.max_steps=4", f"hydra.run.dir={run1}", tmp=tmp_path)
    run_script("train.py", *tiny, "trainer.max_steps=6", f"ckpt_path={run1 / 'checkpoints' / 'last.ckpt'}",
               f"hydra.run.dir={run2}", tmp=tmp_path)
    (first,), (resumed,) = find_offline_runs(run1), find_offline_runs(run2)
    assert first.run_id == resumed.run_id == (run2 / RUN_ID_FILE).read_text().strip()
    assert first.job_type == "train" and "logger" not in first.name and "ckpt_path" not in resumed.name
    for r in (first, resumed):
        assert {"train/loss_step", "val/eer", "lr-Adam"} <= r.history_keys, sorted(r.history_keys)
        assert r.config["training.optimizer.lr"] == 1e-4 and r.config["hydra_choices.loss"] == "ge2e"
