"""``evaluate.py task=emotion_verification``: speaker verification against neutral enrolment, per
test emotion (``evaluation/emotion_verification.py``), with a table and a bar plot."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from deeptalk_ser.embedding.windowing import describe_windowing
from deeptalk_ser.evaluation.emotion_verification import emotion_verification, plot_emotion_verification
from deeptalk_ser.evaluation.intervals import ci_metrics, ci_text, interval_settings
from deeptalk_ser.evaluation.labels import count_labels
from deeptalk_ser.runs.compensation import apply_compensation
from deeptalk_ser.runs.common import embed_selected, finish_run, scored_features, start_run
from deeptalk_ser.utils.errors import ConfigError
from deeptalk_ser.utils.reporting import markdown_table


def run(cfg: DictConfig) -> dict[str, Any]:
    """The results dict, also written to ``results.json``; prints the per-emotion table."""
    t0 = time.perf_counter()
    out, data = start_run(cfg)
    emotions = list(cfg.task.emotions) if cfg.task.get("emotions") else None
    # the listed emotions and the enrolment label, or every label present; the rest is counted
    used = (set(emotions) | {cfg.task.enrol_label}) if emotions is not None else {u.label for u in data.utts} - {None}
    candidates = [u for u in data.utts if u.label in used]
    left_out = count_labels((u.label for u in data.utts), skip=used)
    if not any(u.label == cfg.task.enrol_label for u in candidates):
        raise ConfigError("task.enrol_label", f"no {cfg.data.name} utterance is labelled {cfg.task.enrol_label!r}")
    store, extraction, encoder_name, utts = embed_selected(cfg, data, candidates, out / "extract_summary.json")
    ci_cfg = interval_settings(cfg)
    comp = apply_compensation(cfg, utts, scored_features(store, [u.id for u in utts]), out)
    utts = comp.utts  # compensation.data=same: only the speakers the compensation never saw

    def score(X: np.ndarray) -> dict[str, Any]:
        return emotion_verification(utts, X, cfg.task.enrol_label, emotions, p_targets=tuple(cfg.task.p_targets),
                                    intervals=ci_cfg)

    res = score(comp.after)
    before = None if comp.info["method"] == "none" else score(comp.before)
    extra: dict[str, Any] = {"compensation": comp.info}
    if before is not None:  # the same trials without compensation, named as in task=verification
        extra.update({"emotions_uncompensated": before["emotions"],
                      "mean_emotional_eer_uncompensated": before["mean_emotional_eer"],
                      "reference_eer_uncompensated": before["reference_eer"]})
    results = {"task": "emotion_verification", "data": cfg.data.name, "encoder": encoder_name,
               "classifier": "cosine", "protocol": f"enrol={cfg.task.enrol_label}",
               "windowing": describe_windowing(store.meta.get("key", {}).get("windowing")),
               "n_utterances": len(utts), "n_speakers": len({u.speaker for u in utts}), **res, **extra,
               "eer": res["mean_emotional_eer"], "ci": ci_cfg, "labels_left_out": left_out, "extraction": extraction,
               "wall_seconds": time.perf_counter() - t0}
    png = plot_emotion_verification(res, str(out / "emotion_verification.png"),
                                    f"{cfg.data.name} {encoder_name}: enrol {cfg.task.enrol_label}, test per emotion",
                                    before=before)
    p0 = f"p{cfg.task.p_targets[0]:g}"
    metrics: dict[str, float] = {} if res["reference_eer"] is None else {"test/reference_eer": res["reference_eer"]}
    for e, rec in res["emotions"].items():
        metrics[f"test/eer_{e}"] = rec["eer"]
        metrics[f"test/min_dcf_{p0}_{e}"] = rec["min_dcf"][p0]
        metrics.update(ci_metrics(rec.get("ci95", {}), suffix=f"_{e}"))  # test/eer_<emotion>_ci_low, ..._high
    if res["mean_emotional_eer"] is not None:
        metrics["test/mean_emotional_eer"] = res["mean_emotional_eer"]
    if before is not None:
        metrics.update({f"test/eer_uncompensated_{e}": r["eer"] for e, r in before["emotions"].items()})
    finish_run(cfg, out, results, metrics, {"test/emotion_verification": Path(png)}, table=False)
    rows = [{"test emotion": e, "target": r["n_target"], "non-target": r["n_nontarget"], "EER": f"{r['eer']:.4f}",
             f"EER {ci_cfg['level'] * 100:g}% CI": ci_text((r.get("ci95") or {}).get("eer")),
             f"minDCF({p0})": f"{r['min_dcf'][p0]:.4f}", "EER - reference": "-" if r["eer_minus_reference"] is None else f"{r['eer_minus_reference']:+.4f}"}
            for e, r in res["emotions"].items()]
    if before is not None:  # the same trials scored without compensation, beside each row
        for row, (e, r) in zip(rows, res["emotions"].items()):
            b = before["emotions"].get(e)
            row["EER uncompensated"] = "-" if b is None else f"{b['eer']:.4f}"
            row["uncompensated CI"] = "-" if b is None else ci_text((b.get("ci95") or {}).get("eer"))
            row[f"minDCF({p0}) uncompensated"] = "-" if b is None else f"{b['min_dcf'][p0]:.4f}"
    print(markdown_table(rows, list(rows[0])))
    return results
