"""``evaluate.py task=dimensional``: continuous emotion (activation / valence / dominance) from
embeddings with SVR and a ridge baseline, CCC per dimension, per fold and pooled."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from deeptalk_ser.embedding.windowing import describe_windowing
from deeptalk_ser.evaluation.protocols import group_values, write_split_file
from deeptalk_ser.evaluation.regression import dimension_targets, plot_dimensional, run_dimensional_folds
from deeptalk_ser.runs.common import embed_selected, finish_run, start_run
from deeptalk_ser.utils.errors import ConfigError, DataError
from deeptalk_ser.utils.reporting import markdown_table


def run(cfg: DictConfig) -> dict[str, Any]:
    """The results dict, also written to ``results.json``; prints CCC per model and dimension."""
    t0 = time.perf_counter()
    out, data = start_run(cfg)
    dims = list(cfg.task.dimensions)
    rows, _ = dimension_targets(data.utts, dims)
    if not rows:
        raise ConfigError("task.dimensions", f"no {cfg.data.name} utterance carries all of {dims} "
                                             "(dimensional ratings exist in IEMOCAP and MSP-Podcast)")
    candidates = [data.utts[i] for i in rows]
    n_unrated = len(data.utts) - len(rows)  # said in results and the final line, never dropped silently
    warnings = [f"left out {n_unrated} utterance(s) without all of {', '.join(dims)}"] if n_unrated else []
    models = {name: instantiate(spec) for name, spec in cfg.task.models.items()}
    protocol = instantiate(cfg.protocol, _convert_="all")
    dummy = np.array(["-"] * len(candidates), dtype=object)
    protocol.folds(candidates, dummy)  # impossible fold settings fail before the extraction
    store, extraction, encoder_name, embedded = embed_selected(cfg, data, candidates, out / "extract_summary.json")
    keep, Y = dimension_targets(embedded, dims)
    utts = [embedded[i] for i in keep]
    if len(utts) < 2:
        raise DataError(data.report.manifest, f"{len(utts)} rated utterance(s) got an embedding (the others were "
                                              "dropped or skipped: see extract_summary.json)")
    X = store.select([u.id for u in utts])
    folds = protocol.folds(utts, np.array(["-"] * len(utts), dtype=object))
    split_hash = write_split_file(out / "splits.json", protocol, folds, utts)
    res = run_dimensional_folds(X, Y, dims, folds, models, group_values(utts, "speaker"), protocol.speaker_independent)
    first = next(iter(models))
    png = plot_dimensional(Y, res["predictions"][first], dims, str(out / "dimensional.png"),
                           f"{cfg.data.name} {encoder_name} + {first} ({protocol.name})")
    results = {"task": "dimensional", "data": cfg.data.name, "protocol": protocol.name, "encoder": encoder_name,
               "classifier": "+".join(models), "dimensions": dims,
               "windowing": describe_windowing(store.meta.get("key", {}).get("windowing")),
               "n_utterances": len(utts), "n_speakers": len({u.speaker for u in utts}), "n_folds": len(folds),
               "pooled": res["pooled"], "folds": res["folds"], "split_hash": split_hash, "split_file": "splits.json",
               "models_config": OmegaConf.to_container(cfg.task.models, resolve=True),
               "n_unrated_left_out": n_unrated, "warnings": warnings,
               "extraction": extraction, "wall_seconds": time.perf_counter() - t0}
    metrics = {f"test/{k}/ccc": v["ccc"] for k, v in res["pooled"].items()}
    finish_run(cfg, out, results, metrics, {"test/dimensional": Path(png)}, table=False)
    table = [{"model": m, **{d: f"{res['pooled'][f'{m}/{d}']['ccc']:.3f}" for d in dims}} for m in models]
    print("pooled CCC\n" + markdown_table(table, ["model", *dims]))
    return results
