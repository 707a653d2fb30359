"""Result artefacts: confusion-matrix image, printed tables, and multirun aggregation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from deeptalk_ser.utils.io import write_text_atomic

SUMMARY_COLUMNS = ("task", "data", "encoder", "windowing", "classifier", "protocol", "backend", "n_utterances", "n_folds",
                   "wa", "ua", "ua_ci_low", "ua_ci_high", "macro_f1", "ua_fold_mean", "ua_fold_std",
                   "eer", "eer_ci_low", "eer_ci_high", "min_dcf_p0.01")
#: a multirun summary: which job, its overrides, whether it finished, its results or its error line
SWEEP_COLUMNS = ("run", "overrides", "status", *SUMMARY_COLUMNS, "error")


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2, 1.2 * len(classes) + 1.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{int(cm[i, j])}\n{norm[i, j]:.2f}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=9)
    ax.set_xticks(range(len(classes)), classes, rotation=30)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "" if v is None else str(v)


def summary_row(results: dict[str, Any]) -> dict[str, Any]:
    row = {k: results.get(k) for k in SUMMARY_COLUMNS}
    row["min_dcf_p0.01"] = (results.get("min_dcf") or {}).get("p0.01")
    ci = results.get("ci95") or {}  # speaker-level bootstrap intervals (evaluation/intervals.py)
    for name in ("ua", "eer"):
        row[f"{name}_ci_low"], row[f"{name}_ci_high"] = ci.get(name) or (None, None)
    return row


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cols = [c for c in columns if any(r.get(c) is not None for r in rows)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _job_overrides(job_dir: Path) -> list[str]:
    """The command-line overrides of one multirun job (``.hydra/overrides.yaml``)."""
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    import yaml

    return [str(o) for o in (yaml.safe_load(path.read_text()) or [])]


def aggregate_runs(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Collect every job below a multirun directory into ``summary.{csv,md}``: a finished job's
    ``results.json`` row, or a failed job's ``error.json`` line (status ``failed``), in job order."""
    import csv
    import io

    sweep_dir = Path(sweep_dir)
    rows = []
    jobs = {p.parent for pattern in ("*/results.json", "*/error.json") for p in sweep_dir.glob(pattern)}
    for job in sorted(jobs, key=lambda p: (len(p.name), p.name)):
        if (job / "results.json").is_file():
            row = {**summary_row(json.loads((job / "results.json").read_text())), "status": "ok"}
        else:
            row = {"status": "failed", "error": json.loads((job / "error.json").read_text()).get("error")}
        rows.append({"run": job.name, "overrides": _job_overrides(job), **row})
    if not rows:
        return rows
    shared = set.intersection(*(set(r["overrides"]) for r in rows)) if len(rows) > 1 else set()
    for r in rows:  # what tells the jobs apart: the overrides not common to the whole sweep
        r["overrides"] = " ".join(o for o in r["overrides"] if o not in shared) or None
    cols = list(SWEEP_COLUMNS)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(sweep_dir / "summary.csv", buf.getvalue())
    write_text_atomic(sweep_dir / "summary.md", markdown_table(rows, cols))
    return rows
