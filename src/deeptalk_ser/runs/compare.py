"""``compare.py``: two or more finished emotion runs compared the way a sweep compares its jobs.

Each run's UA (with its interval from ``results.json``) against the best of them, by the paired
sign-flip test over speakers (``evaluation/comparison.py``), Holm-corrected; runs that did not
score the same utterances of the same speakers in the same folds are refused with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from deeptalk_ser.evaluation.comparison import compare_to_best, read_scored_run, why_not_paired
from deeptalk_ser.utils.errors import ConfigError
from deeptalk_ser.utils.io import write_csv_atomic, write_text_atomic
from deeptalk_ser.utils.reporting import markdown_table, plot_forest

COLUMNS = ("run", "ua", "ua_ci_low", "ua_ci_high", "diff_vs_best", "p_raw", "p_vs_best", "vs_best", "path")


def _interval(run_dir: Path) -> tuple[float | None, float | None]:
    """The run's UA interval from its ``results.json`` (None when it has none)."""
    path = run_dir / "results.json"
    if not path.is_file():
        return None, None
    ci = (json.loads(path.read_text()).get("ci95") or {}).get("ua") or (None, None)
    return ci[0], ci[1]


def run(cfg: DictConfig) -> dict[str, Any]:
    paths = OmegaConf.to_container(cfg.runs, resolve=True) if not isinstance(cfg.runs, str) else [cfg.runs]
    if not isinstance(paths, list) or len(paths) < 2:
        raise ConfigError("runs", "name at least two run folders: runs=[outputs/evaluate/runs/A,outputs/evaluate/runs/B]")
    dirs = [Path(str(p)).expanduser() for p in paths]
    folders = [d if d.is_dir() else d.parent for d in dirs]
    names = [f.name for f in folders]
    if len({f.parent for f in folders}) > 1:  # jobs of two sweeps share names (0, 1, ...): name them by path
        names = [str(d) for d in dirs]
    runs = [read_scored_run(d, n) for d, n in zip(dirs, names)]
    for other in runs[1:]:
        reason = why_not_paired(runs[0], other)
        if reason:
            raise ConfigError("runs", f"{other.path} cannot be compared with {runs[0].path}: {reason}")
    result = compare_to_best(runs, float(cfg.alpha), int(cfg.n_resamples), int(cfg.seed))
    rows = []
    for r, folder in zip(runs, folders):
        vb = result[r.name]
        lo, hi = _interval(folder)
        rows.append({"run": r.name, "ua": r.ua, "ua_ci_low": lo, "ua_ci_high": hi, "diff_vs_best": vb.diff,
                     "p_raw": vb.p_raw, "p_vs_best": vb.p_vs_best, "vs_best": vb.mark, "path": str(r.path)})
    rows.sort(key=lambda row: -row["ua"])
    out = Path(cfg.output)
    write_csv_atomic(out / "comparison.csv", rows, COLUMNS)
    table = markdown_table(rows, COLUMNS[:-1])
    write_text_atomic(out / "comparison.md", table)
    n_classes = len(runs[0].classes)
    forest = plot_forest(rows, out / "forest.png", f"paired UA comparison ({len(rows)} runs)", chance=1 / n_classes)
    best = rows[0]["run"]
    n_worse = sum(r["vs_best"] == "worse" for r in rows)
    print(table)
    print(f"paired sign-flip test over {len(set(runs[0].speakers.tolist()))} speakers, Holm over {len(rows) - 1} "
          f"test(s), alpha {cfg.alpha}: best {best}; {n_worse} worse, {len(rows) - 1 - n_worse} not distinguishable "
          f"-> {out}/comparison.{{csv,md}}, forest.png")
    return {"rows": rows, "best": best, "forest": str(forest) if forest else None}
