"""Result artefacts: confusion-matrix image, printed tables, and multirun aggregation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from deeptalk_ser.utils.io import write_csv_atomic, write_text_atomic

SUMMARY_COLUMNS = ("task", "data", "encoder", "windowing", "classifier", "protocol", "backend", "n_utterances", "n_folds",
                   "wa", "ua", "ua_ci_low", "ua_ci_high", "macro_f1", "ua_fold_mean", "ua_fold_std",
                   "eer", "eer_ci_low", "eer_ci_high", "min_dcf_p0.01")
#: a multirun summary: which job, its overrides, whether it finished, its results, the paired test
#: against the sweep's best job (evaluation/comparison.py) or its error line
_AT = SUMMARY_COLUMNS.index("ua_ci_high") + 1
SWEEP_COLUMNS = ("run", "overrides", "status", *SUMMARY_COLUMNS[:_AT], "p_vs_best", "vs_best", *SUMMARY_COLUMNS[_AT:],
                 "error")


def pyplot_agg() -> Any:
    """matplotlib's pyplot on the non-interactive backend (runs have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, ax: Any, title: str, path: str | Path) -> Path:
    """Title, layout, write the PNG and free the figure."""
    import matplotlib.pyplot as plt

    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(Path(path), dpi=110)
    plt.close(fig)
    return Path(path)


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path, title: str) -> Path:
    import numpy as np

    plt = pyplot_agg()

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
    return _save(fig, ax, title, path)


def plot_forest(rows: Sequence[dict[str, Any]], path: str | Path, title: str, chance: float | None = None) -> Path | None:
    """UA with its speaker-level interval per run, sorted, the best on top; marked by the paired
    test against the best (``vs_best``). None when no row has a UA."""
    plt = pyplot_agg()

    rows = sorted((r for r in rows if isinstance(r.get("ua"), (int, float))), key=lambda r: r["ua"])
    if not rows:
        return None
    colours = {"best": "tab:green", "indistinguishable": "tab:blue", "worse": "tab:red"}
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.4))
    for y, r in enumerate(rows):
        lo, hi = r.get("ua_ci_low"), r.get("ua_ci_high")
        colour = colours.get(str(r.get("vs_best")), "tab:gray")
        if lo is not None and hi is not None:
            ax.plot([lo, hi], [y, y], color=colour, lw=2)
        ax.plot(r["ua"], y, "o", color=colour)
    if chance is not None:
        ax.axvline(chance, color="k", ls=":", lw=1, label=f"chance {chance:.2f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(range(len(rows)), [str(r.get("overrides") or r.get("run")) for r in rows], fontsize=8)
    ax.set_xlabel("UA with 95% speaker-bootstrap interval (green best, blue not distinguishable, red worse)")
    return _save(fig, ax, title, path)


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


def collect_runs(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One row per job below a multirun directory: a finished job's ``results.json`` row (the
    whole file under ``results``, for tables with other columns), or a failed job's ``error.json``
    line (status ``failed``), in job order; ``overrides`` keeps only what tells the jobs apart."""
    sweep_dir = Path(sweep_dir)
    rows = []
    jobs = {p.parent for pattern in ("*/results.json", "*/error.json") for p in sweep_dir.glob(pattern)}
    for job in sorted(jobs, key=lambda p: (len(p.name), p.name)):
        if (job / "results.json").is_file():
            results = json.loads((job / "results.json").read_text())
            row = {**summary_row(results), "status": "ok", "results": results}
        else:
            row = {"status": "failed", "error": json.loads((job / "error.json").read_text()).get("error")}
        rows.append({"run": job.name, "overrides": _job_overrides(job), **row})
    shared = set.intersection(*(set(r["overrides"]) for r in rows)) if len(rows) > 1 else set()
    for r in rows:  # what tells the jobs apart: the overrides not common to the whole sweep
        r["overrides"] = " ".join(o for o in r["overrides"] if o not in shared) or None
    return rows


def write_summary(sweep_dir: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """``summary.csv`` and ``summary.md`` (:data:`SWEEP_COLUMNS`) in the sweep directory."""
    write_csv_atomic(Path(sweep_dir) / "summary.csv", rows, SWEEP_COLUMNS)
    write_text_atomic(Path(sweep_dir) / "summary.md", markdown_table(rows, SWEEP_COLUMNS))
