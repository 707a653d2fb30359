"""``evaluate.py task=verification``: cosine-scored speaker verification (EER, minDCF).

Trials come from a list file (VoxCeleb format) or are generated from the manifest's
``task.split`` utterances: all target pairs plus sampled non-target pairs, fixed seed. The
trial list used is written into the run directory so a result names its exact trials.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from omegaconf import DictConfig

from deeptalk_ser.data.trials import generate_trials, read_trials, write_trials
from deeptalk_ser.embedding.windowing import describe_windowing
from deeptalk_ser.evaluation.intervals import ci_metrics, interval_settings
from deeptalk_ser.evaluation.verification import score_verification
from deeptalk_ser.runs.compensation import apply_compensation
from deeptalk_ser.runs.common import embed_selected, finish_run, scored_features, start_run
from deeptalk_ser.utils.errors import DataError


def run(cfg: DictConfig) -> dict[str, Any]:
    """``evaluate.py task=verification``: the results dict, also written to ``results.json``."""
    t0 = time.perf_counter()
    out, data = start_run(cfg)
    split = cfg.task.get("split")
    if cfg.task.get("trials"):  # a trial list names its utterances, whatever their split
        trials = read_trials(cfg.task.trials)
        wanted = {t.enrol for t in trials} | {t.test for t in trials}
        utts = [u for u in data.utts if u.id in wanted]
        unknown = sorted(wanted - {u.id for u in utts})
        if unknown:
            raise DataError(cfg.task.trials, f"{len(unknown)} trial utterance(s) not in the {cfg.data.name} manifest, e.g. {unknown[:5]}")
    else:
        utts = [u for u in data.utts if split is None or u.split == split]
        if not utts:
            raise ValueError(f"no {cfg.data.name} utterances in split {split!r}")
        trials = generate_trials(utts, cfg.task.nontarget_per_target, seed=cfg.task.seed)
    write_trials(out / "trials.txt", trials)
    store, extraction, encoder_name, kept = embed_selected(cfg, data, utts, out / "extract_summary.json")
    kept_ids = {u.id for u in kept}  # short (dropped) or unreadable (skipped) utterances leave their trials out
    scored = [t for t in trials if t.enrol in kept_ids and t.test in kept_ids]
    if len(scored) < len(trials):
        # the trials this encoder could score: pass them as task.trials to compare another encoder
        write_trials(out / "trials_scored.txt", scored)
    ci_cfg = interval_settings(cfg)
    comp = apply_compensation(cfg, kept, scored_features(store, [u.id for u in kept]), out)
    tested = {u.id for u in comp.utts}  # compensation.data=same: only trials of speakers it never saw
    n_dropped = len(trials) - len(scored)
    scored = [t for t in scored if t.enrol in tested and t.test in tested]
    index = {u.id: i for i, u in enumerate(comp.utts)}  # this task's rows only (the store may hold many more)

    def score(X: np.ndarray) -> dict[str, Any]:
        return score_verification(X, index, scored, p_targets=tuple(cfg.task.p_targets),
                                  speaker_of={u.id: u.speaker for u in comp.utts}, intervals=ci_cfg)

    res = score(comp.after)
    if comp.info["method"] != "none":
        before = score(comp.before)
        res.update({"eer_uncompensated": before["eer"], "min_dcf_uncompensated": before["min_dcf"],
                    "ci95_uncompensated": before.get("ci95", {}), "n_trials_compensation": len(scored)})
    results = {"task": "verification", "data": cfg.data.name, "split": split, "encoder": encoder_name,
               "windowing": describe_windowing(store.meta.get("key", {}).get("windowing")),
               "classifier": "cosine", "protocol": "trials" if cfg.task.get("trials") else "generated",
               "n_utterances": len(utts), "n_speakers": len({u.speaker for u in utts}),
               "n_trials_dropped": n_dropped, **res, "ci": ci_cfg, "compensation": comp.info,
               "encoder_config": store.meta.get("key", {}), "extraction": extraction,
               "wall_seconds": time.perf_counter() - t0}
    metrics = {"test/eer": res["eer"], **{f"test/min_dcf_{k}": v for k, v in res["min_dcf"].items()},
               **ci_metrics(res.get("ci95", {}))}
    operating = [{"p_target": k, "min_dcf": v} for k, v in res["min_dcf"].items()]
    operating.append({"p_target": "eer", "min_dcf": None, "eer": res["eer"], "threshold": res["eer_threshold"]})
    return finish_run(cfg, out, results, metrics, tables={"test/operating_points": operating})
