"""The train-corpus x test-corpus matrix of a sweep (``evaluate.py -m data=A,B test_data=A,B``).

Why: a cross-corpus result reads against the diagonal (each corpus under its own protocol) and
against the reverse direction; one table and one heat-map per setup (task, encoder, head,
per-speaker normalisation) put them side by side, each cell with its speaker-bootstrap interval
on the test corpus. Written beside ``summary.{csv,md}`` by the sweep callback
(runs/sweep_summary.py): ``matrix.csv``, ``matrix.md`` and ``matrix.png``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from deeptalk_ser.utils.io import write_csv_atomic, write_text_atomic
from deeptalk_ser.utils.reporting import pyplot_agg

COLUMNS = ("task", "encoder", "classifier", "per_speaker", "train_data", "test_data", "protocol", "n_test",
           "ua", "ua_ci_low", "ua_ci_high", "wa", "macro_f1", "run")
SETUP = ("task", "encoder", "classifier", "per_speaker")


def matrix_rows(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per finished emotion job of the sweep (rows of
    :func:`~deeptalk_ser.utils.reporting.collect_runs`) that names its train and test corpus."""
    rows = []
    for run in runs:
        res = run.get("results") or {}
        if not res.get("train_data") or not res.get("test_data") or "ua" not in res:
            continue
        lo, hi = (res.get("ci95") or {}).get("ua") or (None, None)
        test_rows = sum(f["n_test"] for f in res.get("folds", []))
        rows.append({"task": res["task"], "encoder": res.get("encoder"), "classifier": res.get("classifier"),
                     "per_speaker": res.get("per_speaker_normalisation", "none"), "train_data": res["train_data"],
                     "test_data": res["test_data"], "protocol": res.get("protocol"), "n_test": test_rows,
                     "ua": res["ua"], "ua_ci_low": lo, "ua_ci_high": hi, "wa": res.get("wa"),
                     "macro_f1": res.get("macro_f1"), "run": run["run"]})
    return rows


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    ci = f" [{row['ua_ci_low']:.3f}, {row['ua_ci_high']:.3f}]" if row["ua_ci_low"] is not None else ""
    return f"{row['ua']:.3f}{ci}"


def _groups(rows: list[dict[str, Any]]) -> dict[tuple, dict[tuple[str, str], dict[str, Any]]]:
    groups: dict[tuple, dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        groups[tuple(r[k] for k in SETUP)][(r["train_data"], r["test_data"])] = r
    return groups


def markdown_matrices(rows: list[dict[str, Any]]) -> str:
    """Per setup a markdown table: train corpus per row, test corpus per column, UA [95% CI]."""
    out = []
    for setup, cells in _groups(rows).items():
        trains = sorted({a for a, _ in cells})
        tests = sorted({b for _, b in cells})
        out.append(f"**{', '.join(f'{k}={v}' for k, v in zip(SETUP, setup))}**: UA [95% speaker-bootstrap CI on "
                   "the test corpus]; rows train, columns test; the diagonal is each corpus's own protocol\n")
        out.append("| train \\ test | " + " | ".join(tests) + " |")
        out.append("|---|" + "---|" * len(tests))
        out += [f"| {a} | " + " | ".join(_cell(cells.get((a, b))) for b in tests) + " |" for a in trains]
        out.append("")
    return "\n".join(out)


def plot_matrices(rows: list[dict[str, Any]], path: Path) -> Path:
    """One heat-map of UA per setup, side by side, each cell annotated with UA and its interval."""
    import numpy as np

    plt = pyplot_agg()
    groups = _groups(rows)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups) + 0.8, 4.0), squeeze=False)
    for ax, (setup, cells) in zip(axes[0], groups.items()):
        trains, tests = sorted({a for a, _ in cells}), sorted({b for _, b in cells})
        ua = np.array([[cells[(a, b)]["ua"] if (a, b) in cells else np.nan for b in tests] for a in trains])
        im = ax.imshow(ua, cmap="viridis", vmin=0, vmax=1)
        for i, a in enumerate(trains):
            for j, b in enumerate(tests):
                ax.text(j, i, _cell(cells.get((a, b))).replace(" [", "\n["), ha="center", va="center", fontsize=8,
                        color="black" if np.nan_to_num(ua[i, j]) > 0.6 else "white")
        ax.set_xticks(range(len(tests)), tests)
        ax.set_yticks(range(len(trains)), trains)
        ax.set_xlabel("test corpus")
        if ax is axes[0][0]:
            ax.set_ylabel("train corpus")
        ax.set_title(f"{setup[0]} {setup[1]}+{setup[2]}, per_speaker={setup[3]}", fontsize=9)
    fig.colorbar(im, ax=list(axes[0]), label="UA", shrink=0.8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write_corpus_matrix(sweep_dir: str | Path, runs: Sequence[dict[str, Any]]) -> str | None:
    """``matrix.{csv,md,png}`` in ``sweep_dir`` from its jobs' rows (``collect_runs``) when they
    score at least one cross-corpus pair (train corpus != test corpus); returns the markdown
    tables, else None."""
    rows = matrix_rows(runs)
    if not any(r["train_data"] != r["test_data"] for r in rows):
        return None
    sweep_dir = Path(sweep_dir)
    text = markdown_matrices(rows)
    write_csv_atomic(sweep_dir / "matrix.csv", rows, COLUMNS)
    write_text_atomic(sweep_dir / "matrix.md", text)
    plot_matrices(rows, sweep_dir / "matrix.png")
    return text
