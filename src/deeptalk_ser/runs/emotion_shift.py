"""``evaluate.py task=emotion_shift``: the paper's Fig. 1 on any corpus with a text key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from deeptalk_ser.evaluation.emotion_shift import emotion_shift, plot_emotion_shift
from deeptalk_ser.utils.io import write_json_atomic
from deeptalk_ser.utils.loggers import build_loggers, log_run
from deeptalk_ser.runs.common import embed_selected, prepare_data
from deeptalk_ser.embedding.windowing import describe_windowing


def evaluate_emotion_shift(cfg: DictConfig) -> dict[str, Any]:
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(cfg)
    emotions = list(cfg.task.emotions)
    candidates = [u for u in data.utts if u.label in emotions]
    store, extraction, encoder_name, utts = embed_selected(cfg, data, candidates, out / "extract_summary.json")
    res = emotion_shift(utts, store.select([u.id for u in utts]), emotions, cfg.task.text_key, cfg.task.baseline)
    results = {"task": "emotion_shift", "data": cfg.data.name, "encoder": encoder_name,
               "windowing": describe_windowing(store.meta.get("key", {}).get("windowing")),
               "n_utterances": len(utts), "n_speakers": len({u.speaker for u in utts}), **res,
               "extraction": extraction}
    write_json_atomic(out / "results.json", results)
    png = plot_emotion_shift(res, str(out / "emotion_shift.png"), f"{cfg.data.name} {encoder_name}: same speaker, same text, two emotions")
    metrics = {"test/genuine": res["genuine"]["mean"], "test/impostor": res["impostor"]["mean"],
               "test/inter_emotion": res["inter_emotion"]["mean"], "test/shift_toward_impostor": res["shift_toward_impostor"]}
    log_run(build_loggers(cfg.get("logger")), OmegaConf.to_container(cfg, resolve=True), metrics, {"test/emotion_shift": Path(png)})
    print(f"genuine {res['genuine']['mean']:.3f}  impostor {res['impostor']['mean']:.3f}  "
          f"inter-emotion {res['inter_emotion']['mean']:.3f}  (shift toward impostor {res['shift_toward_impostor']:.2f})")
    for k, v in res["emotion_pairs"].items():
        if v["n"]:
            print(f"  {k:20s} {v['mean']:.3f} ± {v['std']:.3f} (n={v['n']})")
    print(f"results -> {out / 'results.json'}")
    return results
