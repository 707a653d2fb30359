"""Hydra callback that writes one aggregated table when a multirun sweep ends (failed jobs listed
with their error line), with every emotion job compared to the sweep's best by a paired
speaker-level test (``p_vs_best``, ``vs_best``, ``forest.png``), logs it to W&B once, as a run of
its own (``job_type`` ``summary``) in the sweep's group, and ends the sweep with status 1 when any
job failed. It reads the sweep's composed config, so it lives with the other runs."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from deeptalk_ser.evaluation.comparison import compare_run_dirs
from deeptalk_ser.utils.corpus_matrix import write_corpus_matrix
from deeptalk_ser.utils.reporting import SWEEP_COLUMNS, collect_runs, markdown_table, plot_forest, write_summary

log = logging.getLogger(__name__)


def _wandb_conf(config: DictConfig) -> dict[str, Any] | None:
    """The W&B logger settings of the sweep, if it logs to W&B (``logger=csv`` / ``none``: None).
    Only plain fields are read: the job-level interpolations (output_dir) do not exist here."""
    node = OmegaConf.select(config, "logger.wandb", default=None)
    if node is None or "wandb" not in str(node.get("_target_", "")).lower():
        return None
    keys = ("project", "entity", "offline", "tags")
    return {k: OmegaConf.select(node, k, default=None, throw_on_resolution_failure=False) for k in keys}


def add_paired_comparisons(config: DictConfig, rows: list[dict[str, Any]]) -> str | None:
    """``p_vs_best`` and ``vs_best`` into the rows of emotion jobs (``comparison.*`` settings of the
    sweep's config); returns the name of the best job, or the reason no comparison was made."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    settings = {k: OmegaConf.select(config, f"comparison.{k}", default=d, throw_on_resolution_failure=False)
                for k, d in (("alpha", 0.05), ("n_resamples", 9999), ("seed", 0))}
    try:
        result = compare_run_dirs({r["run"]: sweep_dir / r["run"] for r in rows if r.get("status") == "ok"},
                                  float(settings["alpha"]), int(settings["n_resamples"]), int(settings["seed"] or 0))
    except Exception as exc:  # a bad predictions file must not cost the sweep its table
        log.warning("paired comparisons not made: %s", exc)
        return None
    for r in rows:
        if r["run"] in result:
            r["p_vs_best"], r["vs_best"] = result[r["run"]].p_vs_best, result[r["run"]].mark
    bests = sorted({v.best for v in result.values() if v.best})
    return ", ".join(bests) if bests else None


def log_sweep_summary(config: DictConfig, rows: Sequence[dict[str, Any]], columns: Sequence[str],
                      forest: Path | None = None) -> str | None:
    """Log the sweep's summary table (and its forest plot) as a W&B Table in its own run of the
    sweep's group; returns the run's directory (None when the sweep does not log to W&B)."""
    wconf = _wandb_conf(config)
    if wconf is None or not rows:
        return None
    import wandb

    from deeptalk_ser.utils.loggers import wandb_table

    sweep_dir = Path(str(config.hydra.sweep.dir))
    group = sweep_dir.name
    overrides = list(OmegaConf.select(config, "hydra.overrides.task", default=[]) or [])
    run = wandb.init(project=wconf["project"], entity=wconf["entity"], group=group, job_type="summary",
                     name=f"{group} summary", dir=str(sweep_dir), tags=wconf["tags"],
                     mode="offline" if wconf["offline"] in (None, True) else "online",
                     config={"n_runs": len(rows), "sweep_dir": str(sweep_dir), "overrides": overrides,
                             "job": str(OmegaConf.select(config, "hydra.job.name", default=""))})
    try:
        run.log({"sweep/summary": wandb_table(rows, columns)})
        if forest is not None:
            run.log({"sweep/forest": wandb.Image(str(forest))})
        failed = [r["run"] for r in rows if r.get("status") == "failed"]
        run.summary["n_failed"] = len(failed)
        run.summary["failed_runs"] = ", ".join(failed)
        for metric in ("ua", "wa", "macro_f1", "eer"):  # the best of the sweep, at a glance in the runs table
            vals = [(r[metric], r["run"]) for r in rows if isinstance(r.get(metric), (int, float))]
            if vals:
                best = (min if metric == "eer" else max)(vals)
                run.summary[f"best/{metric}"] = best[0]
                run.summary[f"best/{metric}_run"] = best[1]
    finally:
        run.finish()
    return str(sweep_dir / "wandb")


class AggregateResults(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        rows = collect_runs(sweep_dir)
        forest = None
        if rows:
            best = add_paired_comparisons(config, rows)
            write_summary(sweep_dir, rows)
            print(f"\nSweep summary ({len(rows)} runs) -> {sweep_dir}/summary.{{csv,md}}")
            print(markdown_table(rows, SWEEP_COLUMNS))
            if sum(isinstance(r.get("ua"), (int, float)) for r in rows) > 1:
                forest = plot_forest(rows, sweep_dir / "forest.png", f"{sweep_dir.name}: UA per job")
                print(f"forest plot (UA and interval per job) -> {forest}")
            if best:
                print(f"p_vs_best: paired sign-flip test over speakers against the best job of the same utterances "
                      f"and folds ({best}), Holm-corrected; vs_best 'indistinguishable' = not shown to differ")
            matrix = write_corpus_matrix(sweep_dir, rows)  # data x test_data sweeps (utils/corpus_matrix.py)
            if matrix:
                print(f"train x test corpus matrix -> {sweep_dir}/matrix.{{csv,md,png}}\n{matrix}")
            try:
                where = log_sweep_summary(config, rows, SWEEP_COLUMNS, forest)
            except Exception as exc:  # the table is on disk already; W&B trouble must not fail the sweep
                log.warning("sweep summary not logged to W&B: %s", exc)
            else:
                if where:
                    print(f"W&B group {Path(str(config.hydra.sweep.dir)).name}: summary table -> {where}")
        else:
            log.warning("multirun ended without any results.json under %s", config.hydra.sweep.dir)
        failed = [r for r in rows if r.get("status") == "failed"]
        if failed:  # every job ran and the summary is written; the sweep as a whole did not succeed
            for r in failed:
                print(f"job {r['run']} failed: {r.get('error')}", file=sys.stderr)
            print(f"{len(failed)} of {len(rows)} jobs failed (listed in {config.hydra.sweep.dir}/summary.md)",
                  file=sys.stderr, flush=True)
            raise SystemExit(1)
