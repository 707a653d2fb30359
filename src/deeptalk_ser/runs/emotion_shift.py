"""``evaluate.py task=emotion_shift``: the paper's Fig. 1 on any corpus with a text key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from deeptalk_ser.embedding.windowing import describe_windowing
from deeptalk_ser.evaluation.emotion_shift import emotion_shift, plot_emotion_shift
from deeptalk_ser.evaluation.labels import count_labels
from deeptalk_ser.runs.common import embed_selected, finish_run, scored_features, start_run


def run(cfg: DictConfig) -> dict[str, Any]:
    """``evaluate.py task=emotion_shift``: the results dict, also written to ``results.json``."""
    out, data = start_run(cfg)
    emotions = list(cfg.task.emotions)
    candidates = [u for u in data.utts if u.label in emotions]
    left_out = count_labels((u.label for u in data.utts), skip=set(emotions))
    store, extraction, encoder_name, utts = embed_selected(cfg, data, candidates, out / "extract_summary.json")
    res = emotion_shift(utts, scored_features(store, [u.id for u in utts]), emotions, cfg.task.text_key, cfg.task.baseline)
    results = {"task": "emotion_shift", "data": cfg.data.name, "encoder": encoder_name,
               "windowing": describe_windowing(store.meta.get("key", {}).get("windowing")),
               "n_utterances": len(utts), "n_speakers": len({u.speaker for u in utts}), **res,
               "labels_left_out": left_out, "extraction": extraction}
    png = plot_emotion_shift(res, str(out / "emotion_shift.png"), f"{cfg.data.name} {encoder_name}: same speaker, same text, two emotions")
    metrics = {"test/genuine": res["genuine"]["mean"], "test/impostor": res["impostor"]["mean"],
               "test/inter_emotion": res["inter_emotion"]["mean"], "test/shift_toward_impostor": res["shift_toward_impostor"]}
    finish_run(cfg, out, results, metrics, {"test/emotion_shift": Path(png)}, table=False)
    print(f"genuine {res['genuine']['mean']:.3f}  impostor {res['impostor']['mean']:.3f}  "
          f"inter-emotion {res['inter_emotion']['mean']:.3f}  (shift toward impostor {res['shift_toward_impostor']:.2f})")
    for k, v in res["emotion_pairs"].items():
        if v["n"]:
            print(f"  {k:20s} {v['mean']:.3f} ± {v['std']:.3f} (n={v['n']})")
    return results
