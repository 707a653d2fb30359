"""End to end: evaluate.py / extract.py in a subprocess on generated EmoDB-layout corpora."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from e2e_utils import read_json, run_script, speech_emodb_tree

pytestmark = pytest.mark.e2e

REQUIRED_KEYS = {"task", "protocol", "encoder", "classifier", "backend", "n_utterances", "n_folds", "wa", "ua",
                 "macro_f1", "f1_per_class", "confusion"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speech_emodb_tree(tmp_path_factory.mktemp("corpus") / "emodb")


def test_sweep_writes_one_aggregated_table(corpus: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    run_script("evaluate.py", "-m", "experiment=egemaps_baseline", "classifier=svm,hierarchical", "task=er,ed",
               f"data.root={corpus}", "logger=csv", f"hydra.sweep.dir={sweep}", tmp=tmp_path)
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert len(rows) == 4
    assert {(r["classifier"], r["task"]) for r in rows} == {("svm", "er"), ("svm", "ed"), ("hierarchical", "er"), ("hierarchical", "ed")}
    assert (sweep / "summary.md").read_text().count("\n| ") >= 4
    for r in rows:
        res = read_json(sweep / r["run"] / "results.json")
        assert REQUIRED_KEYS <= set(res)
        assert res["encoder"] == "egemaps" and res["backend"] in ("sklearn", "sklearnex")  # auto: sklearnex when installed
        assert res["n_folds"] == 4 and res["n_utterances"] == 4 * 3 * 4  # boredom (L) left out
        n_classes = 4 if res["task"] == "er" else 2
        assert len(res["confusion"]) == n_classes
        assert sum(map(sum, res["confusion"])) == res["n_utterances"]
        # the fixture's emotions differ the same way for every speaker: well above chance (0.25 / 0.5)
        assert res["ua"] >= 0.7, (res["task"], res["classifier"], res["ua"])
        assert (sweep / r["run"] / "confusion.png").stat().st_size > 1000
    # paired tests: ER and ED jobs scored other labels, so each task has its own best
    for task in ("er", "ed"):
        marks = sorted(r["vs_best"] for r in rows if r["task"] == task)
        assert marks[0] == "best" and marks[1] in ("indistinguishable", "worse"), marks
        p = [float(r["p_vs_best"]) for r in rows if r["task"] == task and r["vs_best"] != "best"]
        assert len(p) == 1 and 2 / 2 ** 4 <= p[0] <= 1.0  # 4 speakers: 16 sign flips, p at least 2/16
    assert (sweep / "forest.png").stat().st_size > 1000
    # compare.py: the two ER jobs as a pair; an ER and an ED job are refused with the reason
    er = [sweep / r["run"] for r in rows if r["task"] == "er"]
    ed = next(sweep / r["run"] for r in rows if r["task"] == "ed")
    out = tmp_path / "compare"
    run_script("compare.py", f"runs=[{er[0]},{er[1]}]", f"hydra.run.dir={out}", tmp=tmp_path)
    table = list(csv.DictReader((out / "comparison.csv").open()))
    assert [t["vs_best"] for t in table][0] == "best" and float(table[0]["ua"]) >= float(table[1]["ua"])
    assert table[0]["ua_ci_low"] and (out / "forest.png").is_file()
    proc = run_script("compare.py", f"runs=[{er[0]},{ed}]", f"hydra.run.dir={tmp_path / 'refused'}", tmp=tmp_path,
                      check=False, env={"HYDRA_FULL_ERROR": "0"})
    line = next(ln for ln in proc.stderr.splitlines() if ": error: " in ln)
    assert proc.returncode == 1 and "cannot be compared" in line and "another true label" in line, proc.stderr


def test_default_run_ge2e_with_wandb_offline(corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_script("evaluate.py", f"data.root={corpus}", f"hydra.run.dir={run}", tmp=tmp_path)
    res = read_json(run / "results.json")
    assert REQUIRED_KEYS <= set(res)
    assert (res["encoder"], res["classifier"], res["task"], res["protocol"]) == ("ge2e", "svm", "er", "loso")
    assert res["ua"] >= 0.5, res["ua"]  # learns the fixture's emotions (chance 0.25)
    assert res["speaker_independent"] is True
    assert all(f["speakers_shared"] == 0 for f in res["folds"])
    assert list((run / "wandb").glob("offline-run-*")), "W&B should log offline without an account"
    assert (run / "csv" / "metrics.csv").is_file()
    assert "| er | emodb | ge2e | utterance | svm | loso |" in proc.stdout
    # one row per scored utterance, in the pooled order, with the speaker and fold that scored it
    rows = list(csv.DictReader((run / res["predictions_file"]).open()))
    assert len(rows) == res["n_utterances"] and len({r["id"] for r in rows}) == len(rows)
    assert sum(r["true"] == r["pred"] for r in rows) / len(rows) == pytest.approx(res["wa"])
    assert {r["fold"] for r in rows} == {f["name"] for f in res["folds"]}
    # a second run reuses the embedding store instead of extracting again
    run2 = tmp_path / "run2"
    run_script("evaluate.py", f"data.root={corpus}", f"hydra.run.dir={run2}", "logger=none", tmp=tmp_path)
    assert "reused_store" in read_json(run2 / "extract_summary.json")
    assert read_json(run2 / "results.json")["ua"] == res["ua"]


def test_extract_counts_short_utterances(corpus: Path, tmp_path: Path) -> None:
    import shutil

    import soundfile as sf

    from conftest import speech_like

    root = tmp_path / "emodb"
    shutil.copytree(corpus, root)
    sf.write(str(root / "wav" / "11a05Na.wav"), speech_like(0.6, 16000), 16000)  # shorter than a 1 s window
    run = tmp_path / "run"
    run_script("extract.py", "encoder=deeptalk", f"data.root={root}", f"hydra.run.dir={run}", tmp=tmp_path)
    summary = read_json(run / "extract_summary.json")
    assert summary["utterances_in"] == 4 * 3 * 5 + 1
    assert summary["dropped_short"] == ["11a05Na"]
    assert summary["embedded"] == summary["utterances_in"] - 1
    assert summary["windows"] > 0 and summary["audio_seconds"] > 0 and summary["real_time_factor"] > 0


def test_bad_audio_is_named_and_skippable(corpus: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "emodb"
    shutil.copytree(corpus, root)
    (root / "wav" / "03a01Wa.wav").write_bytes(b"RIFF\x00\x00garbage")
    proc = run_script("evaluate.py", "experiment=egemaps_baseline", f"data.root={root}", "logger=none", tmp=tmp_path, check=False)
    assert proc.returncode != 0
    assert "03a01Wa.wav" in proc.stderr and "unreadable" in proc.stderr
    run = tmp_path / "run"
    run_script("evaluate.py", "experiment=egemaps_baseline", f"data.root={root}", "data.on_error=skip", "logger=none",
               f"hydra.run.dir={run}", tmp=tmp_path)
    res = read_json(run / "results.json")
    assert [s["id"] for s in res["prepare_skipped"]] == ["03a01Wa"]
    assert res["n_utterances"] == 4 * 3 * 4 - 1


def test_missing_root_is_a_clear_error(tmp_path: Path) -> None:
    proc = run_script("evaluate.py", f"data.root={tmp_path / 'nowhere'}", "logger=none", tmp=tmp_path, check=False)
    assert proc.returncode != 0
    assert str(tmp_path / "nowhere") in proc.stderr and "corpus root not found" in proc.stderr
