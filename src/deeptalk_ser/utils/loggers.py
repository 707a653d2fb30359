"""Experiment loggers from config (Lightning's WandbLogger / CSVLogger), used by both training
and evaluation. W&B runs offline by default so that no account is ever needed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def build_loggers(logger_cfg: DictConfig | None) -> list[Any]:
    if not logger_cfg:
        return []
    loggers = []
    for name, conf in logger_cfg.items():
        if conf is not None and "_target_" in conf:
            loggers.append(instantiate(conf))
    return loggers


def log_run(loggers: list[Any], config: dict[str, Any], metrics: dict[str, float], images: dict[str, Path]) -> None:
    """Send config, scalar metrics and images to every logger that supports them."""
    for lg in loggers:
        lg.log_hyperparams(config)
        lg.log_metrics(metrics, step=0)
        if images and hasattr(lg, "log_image"):
            for key, path in images.items():
                lg.log_image(key=key, images=[str(path)])
        lg.finalize("success")
        if hasattr(lg, "experiment") and type(lg).__name__ == "WandbLogger":
            import wandb

            wandb.finish()
