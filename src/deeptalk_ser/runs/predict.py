"""``predict.py``: the emotion of new recordings with a saved head.

The encoder is rebuilt from the head's own record (same option, checkpoint, windowing: checked
against the project's encoder options, the class never taken from the file), every
input is embedded as the training utterances were, and the head predicts a label with per-class
scores. Files that cannot be read or are too short are reported, listed in the CSV with their
reason and counted in the final line; never dropped silently.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from deeptalk_ser.data.audio.io import load_audio
from deeptalk_ser.data.corpora.user import AUDIO_SUFFIXES
from deeptalk_ser.embedding.extraction import embed_one
from deeptalk_ser.evaluation.heads import class_scores, load_head
from deeptalk_ser.runs.common import encoder_from_config
from deeptalk_ser.utils.errors import AudioError, ConfigError, DataError
from deeptalk_ser.utils.io import atomic_path
from deeptalk_ser.utils.reporting import markdown_table


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given, folders searched recursively for audio; a missing input is an error."""
    files: list[Path] = []
    for raw in inputs:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES
                           and not f.name.startswith("."))
            if not found:
                raise DataError(p, f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(p, "input not found")
    return files


def run(cfg: DictConfig) -> dict[str, Any]:
    inputs = OmegaConf.to_container(cfg.inputs, resolve=True) if not isinstance(cfg.inputs, str) else [cfg.inputs]
    if not inputs:
        raise ConfigError("inputs", "name at least one audio file or folder")
    head, info = load_head(cfg.model, allow_trust_checkpoint=bool(cfg.get("trust_checkpoint", False)))
    if "encoder" not in info:
        raise DataError(Path(cfg.model) / "head.json", "records no encoder: predict.py cannot embed new audio for it")
    files = expand_inputs([str(i) for i in inputs])  # type: ignore[union-attr]
    enc_cfg = OmegaConf.create(info["encoder"])  # checked against conf/encoder by load_head; class from the project
    if "device" in enc_cfg:
        enc_cfg.device = cfg.device if cfg.device != "auto" else enc_cfg.device
    encoder, windowing = encoder_from_config(enc_cfg)
    rows, X, ok_rows = [], [], []
    for f in tqdm(files, desc="predict", unit="file", disable=None):
        try:
            wav, sr = load_audio(f)
            emb, _ = embed_one(encoder, encoder.frontend(wav, sr), windowing)
        except AudioError as exc:
            rows.append({"file": str(f), "label": None, "problem": exc.problem})
            continue
        if emb is None:
            rows.append({"file": str(f), "label": None, "problem": "too short or silent for the encoder's windows"})
            continue
        ok_rows.append(len(rows))
        rows.append({"file": str(f), "label": None, "problem": None})
        X.append(emb)
    names: list[str] = []
    if X:
        feats = np.stack(X)
        pred = head.predict(feats)
        if info.get("uses_fine_labels"):
            from deeptalk_ser.evaluation.labels import EmotionLabels

            pred = EmotionLabels(**info["labels"]).to_task_labels(pred)  # Sad-First predicts fine classes
        names, scores = class_scores(head, feats)
        for r, label, sc in zip(ok_rows, pred, scores):
            rows[r]["label"] = str(label)
            rows[r].update({f"score_{n}": round(float(v), 6) for n, v in zip(names, sc)})
    out = Path(cfg.output)
    columns = ["file", "label", *[f"score_{n}" for n in names], "problem"]
    with atomic_path(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    print(markdown_table([{k: (Path(v).name if k == "file" else v) for k, v in r.items()} for r in rows], columns))
    bad = [r for r in rows if r["problem"]]
    print(f"predictions -> {out} ({len(rows) - len(bad)} predicted, {len(bad)} skipped: listed with their problem)")
    return {"n_files": len(rows), "n_predicted": len(rows) - len(bad), "skipped": bad, "output": str(out)}
