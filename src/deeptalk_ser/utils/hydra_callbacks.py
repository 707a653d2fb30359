"""Hydra callback that writes one aggregated table when a multirun sweep ends."""

from __future__ import annotations

import logging
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from deeptalk_ser.utils.reporting import SUMMARY_COLUMNS, aggregate_runs, markdown_table

log = logging.getLogger(__name__)


class AggregateResults(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        rows = aggregate_runs(config.hydra.sweep.dir)
        if rows:
            print(f"\nSweep summary ({len(rows)} runs) -> {config.hydra.sweep.dir}/summary.{{csv,md}}")
            print(markdown_table(rows, ["run", *SUMMARY_COLUMNS]))
        else:
            log.warning("multirun ended without any results.json under %s", config.hydra.sweep.dir)
