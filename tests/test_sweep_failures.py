"""A multirun survives a failing job: every job runs, the failed one records its one-line error in
its own folder and log, and the sweep summary (table and W&B summary run) lists it (issue 20, item 3)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from deeptalk_ser.utils.reporting import collect_runs, write_summary


def _job(sweep: Path, name: str, overrides: list[str], results: dict | None = None, error: str | None = None) -> None:
    d = sweep / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if results is not None:
        (d / "results.json").write_text(json.dumps(results))
    if error is not None:
        (d / "error.json").write_text(json.dumps({"error": error, "user_error": True}))


def test_aggregate_lists_failed_jobs_in_job_order(tmp_path):
    _job(tmp_path, "0", ["classifier.C=1"], results={"task": "er", "ua": 0.5})
    _job(tmp_path, "1", ["classifier.C=abc"], error="classifier.C: must be a float")
    _job(tmp_path, "10", ["classifier.C=10"], results={"task": "er", "ua": 0.6})
    _job(tmp_path, "2", ["classifier.C=5"])  # still running or killed: no record, not a row
    rows = collect_runs(tmp_path)
    write_summary(tmp_path, rows)
    assert [(r["run"], r["status"]) for r in rows] == [("0", "ok"), ("1", "failed"), ("10", "ok")]
    table = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert table[1]["error"] == "classifier.C: must be a float" and table[1]["overrides"] == "classifier.C=abc"
    assert table[0]["ua"] == "0.5" and table[0]["error"] == ""
    assert "| 1 | classifier.C=abc | failed |" in (tmp_path / "summary.md").read_text()


@pytest.mark.e2e
def test_one_bad_value_does_not_stop_the_sweep(tmp_path):
    """The reported case: ``evaluate.py -m classifier.C=1,abc,10`` ran job 0, failed job 1 and never
    ran job 2, with no summary table, no W&B summary run and no error line in job 1's log."""
    from e2e_utils import run_script, speech_emodb_tree
    from wandb_records import find_offline_runs

    os.environ.pop("WANDB_SERVICE", None)
    corpus = speech_emodb_tree(tmp_path / "emodb", speakers=("03", "08", "09"), texts=("a01", "a02"))
    sweep = tmp_path / "sweep"
    proc = run_script("evaluate.py", "-m", "experiment=egemaps_baseline", "classifier.C=1,abc,10",
                      f"data.root={corpus}", f"hydra.sweep.dir={sweep}", tmp=tmp_path, check=False,
                      env={"HYDRA_FULL_ERROR": "0"})
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert (sweep / "0" / "results.json").is_file() and (sweep / "2" / "results.json").is_file()
    error = json.loads((sweep / "1" / "error.json").read_text())
    assert error["error"].startswith("classifier.C:") and error["user_error"] is True
    assert error["error"] in (sweep / "1" / "evaluate.log").read_text()
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("1 of 3 jobs failed")
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [(r["run"], r["status"]) for r in rows] == [("0", "ok"), ("1", "failed"), ("2", "ok")]
    assert rows[1]["error"] == error["error"] and rows[1]["overrides"] == "classifier.C=abc"
    (summary,) = [r for r in find_offline_runs(sweep) if r.job_type == "summary"]
    table = summary.table("sweep/summary")
    assert len(table["data"]) == 3 and "status" in table["columns"] and "error" in table["columns"]
    assert summary.summary["n_failed"] == 1 and summary.summary["failed_runs"] == "1"
