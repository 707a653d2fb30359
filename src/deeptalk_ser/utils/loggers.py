"""Experiment loggers from config (Lightning's WandbLogger / CSVLogger), used by both training
and evaluation. W&B runs offline by default so that no account is ever needed.

W&B is arranged as a lab dashboard: a Hydra multirun is one W&B *group* (the sweep directory's
name), every job has a ``job_type`` (the task for ``evaluate.py``, else the script), runs are
named by their overrides, and the composed config is logged flat (``classifier.C``,
``hydra_choices.classifier``) so that every choice is a column of the runs table. A run's W&B id
is stable per run directory (kept in ``wandb_run_id``) so that a training resumed with
``ckpt_path=`` continues the W&B run of the directory that checkpoint came from.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from hydra.utils import instantiate
from lightning.pytorch.loggers.wandb import WandbLogger
from omegaconf import DictConfig, OmegaConf

from deeptalk_ser.utils.io import write_text_atomic

log = logging.getLogger(__name__)

#: the file in a run directory that holds its W&B run id
RUN_ID_FILE = "wandb_run_id"
#: override keys left out of a run's name: where things are, not what was chosen
NAME_EXCLUDED_PREFIXES = ("hydra.", "paths.", "logger.", "hydra/")
NAME_EXCLUDED_KEYS = ("logger", "paths", "ckpt_path")
MAX_NAME_LEN = 128


def flatten_config(obj: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: one W&B runs-table column per leaf. Lists stay values."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out.update(flatten_config(value, name, sep))
        else:
            out[name] = value
    return out


class DashboardWandbLogger(WandbLogger):
    """Lightning's WandbLogger with flat hyper-parameters, so Lightning's own ``log_hyperparams``
    calls (the module's hparams, train.py's loss/training dicts) land as dot-key columns too."""

    def log_hyperparams(self, params: Any) -> None:  # type: ignore[override]
        from lightning.fabric.utilities.logger import _convert_params

        super().log_hyperparams(flatten_config(_convert_params(params)))


# ---------------------------------------------------------------- what Hydra knows about the job


def _hydra() -> Any | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def sweep_group() -> str | None:
    """The W&B group of this job: the multirun's sweep directory name; None for a single run.
    Read from the job's own output directory (sweep dir / subdir), which is concrete in every
    launcher, unlike ``${now:}`` in ``hydra.sweep.dir`` re-evaluated in another process."""
    hc = _hydra()
    if hc is None or str(hc.mode) != "RunMode.MULTIRUN":
        return None
    try:
        depth = max(1, len(Path(str(hc.sweep.subdir)).parts))
        return Path(hc.runtime.output_dir).parents[depth - 1].name
    except Exception:  # pragma: no cover - a launcher without runtime.output_dir
        return Path(str(hc.sweep.dir)).name


def override_name(overrides: Sequence[str]) -> str:
    """A run's name from its overrides, leaving out where things are (paths, roots, logger and
    hydra settings): ``classifier=svm,task=er``; ``default`` when nothing was chosen."""
    kept = []
    for o in overrides:
        key, _, value = o.partition("=")
        key = key.lstrip("+~")
        if (key in NAME_EXCLUDED_KEYS or key.startswith(NAME_EXCLUDED_PREFIXES) or key.endswith((".root", "_dir", "_path"))
                or os.sep in value):
            continue
        kept.append(f"{key}={value}")
    name = ",".join(sorted(kept)) or "default"
    return name if len(name) <= MAX_NAME_LEN else name[: MAX_NAME_LEN - 3] + "..."


def job_type(config: Mapping[str, Any] | None) -> str:
    """``evaluate.py``: the task (``er``, ``ed``, ``verification``...); other scripts: their name."""
    hc = _hydra()
    script = str(hc.job.name) if hc is not None else "run"
    task = (config or {}).get("task") if isinstance(config, Mapping) else None
    if script == "evaluate" and isinstance(task, Mapping) and task.get("name"):
        return str(task["name"])
    return script


def hydra_choices() -> dict[str, str]:
    """The option chosen in every config group (``classifier: svm``), hydra's own left out."""
    hc = _hydra()
    if hc is None:
        return {}
    return {k: str(v) for k, v in hc.runtime.choices.items() if not str(k).startswith("hydra")}


# ------------------------------------------------------------------------------ stable run ids


def derived_run_id(run_dir: str | Path) -> str:
    """A W&B id that every process of one run (DDP ranks included) derives alike: a hash of the
    run directory's absolute path."""
    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def find_run_id(path: str | Path, levels: int = 3) -> str | None:
    """The W&B id kept in the run directory above ``path`` (a checkpoint in ``<run>/checkpoints``)."""
    p = Path(path)
    for parent in [p, *p.parents][: levels + 1]:
        f = parent / RUN_ID_FILE
        if f.is_file():
            return f.read_text().strip() or None
    return None


def stable_run_id(save_dir: str | Path, resume_from: str | Path | None = None) -> str:
    """This run's W&B id: the one already kept in ``save_dir``, else the one of the run that
    ``resume_from`` (a checkpoint) belongs to, else derived from ``save_dir``; kept in ``save_dir``."""
    run_id = find_run_id(save_dir, levels=0)
    if run_id is None and resume_from:
        run_id = find_run_id(resume_from)
        if run_id is None:
            log.warning("no %s above %s: the resumed run starts a new W&B run", RUN_ID_FILE, resume_from)
    run_id = run_id or derived_run_id(save_dir)
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(save_dir) / RUN_ID_FILE, run_id + "\n")
    return run_id


# ----------------------------------------------------------------------------- building loggers


def _composed(logger_cfg: DictConfig) -> dict[str, Any] | None:
    """The whole composed config the ``logger`` node belongs to (OmegaConf keeps the parent)."""
    root = logger_cfg._get_root() if isinstance(logger_cfg, DictConfig) else None
    if root is None or root is logger_cfg:
        return None
    try:
        container = OmegaConf.to_container(root, resolve=True)
    except Exception as exc:  # an unresolvable leaf must not cost the run its logging
        log.warning("composed config not logged to W&B (%s)", exc)
        return None
    return container if isinstance(container, dict) else None


def is_wandb(conf: Mapping[str, Any]) -> bool:
    return "wandb" in str(conf.get("_target_", "")).lower()


def wandb_kwargs(conf: Mapping[str, Any], composed: Mapping[str, Any] | None) -> dict[str, Any]:
    """Fill the dashboard fields a W&B logger config leaves null (see ``conf/logger/wandb.yaml``)."""
    hc = _hydra()
    kw: dict[str, Any] = {}
    if conf.get("group") is None:
        kw["group"] = sweep_group()
    if conf.get("job_type") is None:
        kw["job_type"] = job_type(composed)
    if conf.get("name") is None:
        kw["name"] = override_name(list(hc.overrides.task) if hc is not None else [])
    if conf.get("id") is None and conf.get("save_dir"):
        kw["id"] = stable_run_id(conf["save_dir"], conf.get("resume_from"))
    if composed is not None:
        flat = flatten_config({k: v for k, v in composed.items() if k != "hydra"})
        flat.update({f"hydra_choices.{k}": v for k, v in hydra_choices().items()})
        kw["config"] = flat
    return kw


def build_loggers(logger_cfg: DictConfig | None) -> list[Any]:
    """One logger per entry of the ``logger`` config (``conf/logger``); W&B entries get their
    group, job type, name, stable id and the flat composed config filled in."""
    if not logger_cfg:
        return []
    composed = _composed(logger_cfg)
    loggers = []
    for _, conf in logger_cfg.items():
        if conf is None or "_target_" not in conf:
            continue
        if is_wandb(conf):
            plain = OmegaConf.to_container(conf, resolve=True)
            assert isinstance(plain, dict)
            extra = wandb_kwargs(plain, composed)
            plain.pop("resume_from", None)  # ours, not a wandb.init argument
            plain = {k: v for k, v in plain.items() if k not in extra}
            loggers.append(instantiate({**plain, **extra}, _convert_="all"))
        else:
            loggers.append(instantiate(conf))
    return loggers


# ------------------------------------------------------------------------------- W&B payloads


def table_columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> list[str]:
    """The columns of ``rows`` that hold a value somewhere (W&B infers one type per column)."""
    cols = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    return [c for c in cols if any(r.get(c) is not None for r in rows)]


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple, dict)):
        import json

        return json.dumps(value, default=str)
    try:  # numpy scalars
        return value.item()
    except AttributeError:
        return str(value)


def wandb_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Any:
    """A ``wandb.Table`` of dict rows; nested values become JSON text, ints in a float column floats."""
    import wandb

    cols = table_columns(rows, columns)
    data = [[_cell(r.get(c)) for c in cols] for r in rows]
    for j in range(len(cols)):  # W&B refuses int and float mixed in one column
        kinds = {type(row[j]) for row in data if row[j] is not None}
        if kinds == {int, float}:
            for row in data:
                row[j] = None if row[j] is None else float(row[j])
        elif len(kinds) > 1:
            for row in data:
                row[j] = None if row[j] is None else str(row[j])
    return wandb.Table(columns=cols, data=data)


def confusion_plot(confusion: Sequence[Sequence[int]], classes: Sequence[str], title: str) -> Any:
    """W&B's interactive confusion-matrix panel from a counts matrix (rows true, columns predicted)."""
    import numpy as np
    import wandb

    cm = np.asarray(confusion, dtype=int)
    y_true = np.repeat(np.arange(len(classes)), cm.sum(axis=1))
    preds = np.concatenate([np.repeat(np.arange(len(classes)), row) for row in cm]) if cm.size else np.array([], int)
    return wandb.plot.confusion_matrix(y_true=y_true.tolist(), preds=preds.tolist(), class_names=list(classes),
                                       title=title)


def log_run(loggers: list[Any], config: dict[str, Any], metrics: dict[str, float], images: dict[str, Path],
            tables: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
            confusion: Mapping[str, Any] | None = None) -> None:
    """Send config, scalar metrics, images, tables (``{key: rows}``) and a confusion matrix
    (``{"key", "matrix", "classes", "title"}``) to every logger that supports them; W&B gets all
    of it in one step (its summary then holds every scalar), the others the config and scalars."""
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            import wandb

            payload: dict[str, Any] = dict(metrics)
            payload.update({key: wandb.Image(str(path)) for key, path in images.items()})
            payload.update({key: wandb_table(rows) for key, rows in (tables or {}).items() if rows})
            if confusion:
                payload[confusion["key"]] = confusion_plot(confusion["matrix"], confusion["classes"],
                                                           confusion.get("title", "confusion"))
            known = dict(lg.experiment.config)  # the composed config, logged when the run started
            added = {k: v for k, v in flatten_config(config).items() if k not in known}
            if added:  # what the job learnt while running (e.g. corpora.train_data / corpora.test_data)
                lg.experiment.config.update(added)
            lg.experiment.log(payload)
            lg.finalize("success")
            wandb.finish()
            continue
        lg.log_hyperparams(config)
        lg.log_metrics(metrics, step=0)
        if images and hasattr(lg, "log_image"):
            for key, path in images.items():
                lg.log_image(key=key, images=[str(path)])
        lg.finalize("success")
