"""``predict.py``: the emotion of new recordings with a saved head.

The encoder is rebuilt from the head's own record (same option, checkpoint, windowing: checked
against the project's encoder options, the class never taken from the file; a fused head's
record lists its parts, each rebuilt the same way), every input is embedded as the training
utterances were (a fused head: by every part, concatenated; the head's own per-block scaler,
fitted on its training data, does the rest), and the head predicts a label with per-class
scores. Files that cannot be read or are too short are reported, listed in the CSV with their
reason and counted in the final line; never dropped silently.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from deeptalk_ser.data.audio.io import load_audio
from deeptalk_ser.data.corpora.user import AUDIO_SUFFIXES
from deeptalk_ser.embedding.extraction import embed_one
from deeptalk_ser.evaluation.heads import class_scores, load_head
from deeptalk_ser.runs.common import encoder_from_config
from deeptalk_ser.utils.errors import AudioError, ConfigError, DataError
from deeptalk_ser.utils.io import atomic_path
from deeptalk_ser.utils.progress import progress
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


def build_embedders(record: dict[str, Any], device: str) -> list[tuple[Any, Any]]:
    """(encoder, windowing) of the head's encoder, or of each part of a fused one, in block order
    (``device=auto`` keeps the recorded device)."""
    configs = list(record["parts"].values()) if "parts" in record else [record]
    out = []
    for part in configs:
        enc_cfg = OmegaConf.create(part)
        if "device" in enc_cfg and device != "auto":
            enc_cfg.device = device
        out.append(encoder_from_config(enc_cfg))
    return out


#: encoder config keys that name the weights themselves (a file's checksum, a checkpoint's id)
WEIGHT_KEYS = ("model_checksum", "checkpoint")


def _weight_ids(tree: Any) -> set[str]:
    """Every weights identity (:data:`WEIGHT_KEYS`) anywhere in a nested store key or config."""
    if isinstance(tree, dict):
        return {str(v) for k, v in tree.items() if k in WEIGHT_KEYS and v} | {
            i for v in tree.values() for i in _weight_ids(v)}
    if isinstance(tree, list):
        return {i for v in tree for i in _weight_ids(v)}
    return set()


def check_same_weights(embedders: list[tuple[Any, Any]], info: dict[str, Any], head_json: Path) -> None:
    """Refuse a head whose encoder weights changed since it was fitted: a replaced model file or
    checkpoint under the recorded path would otherwise embed new audio into another space, and
    the head would answer without a word. Heads saved before the store key was recorded pass."""
    recorded = _weight_ids(info.get("store_key", {}))
    if not recorded:
        return
    for encoder, _ in embedders:
        changed = _weight_ids(encoder.config()) - recorded
        if changed:
            raise DataError(head_json, f"the {encoder.name} encoder's weights changed since this head was saved "
                            f"(now {', '.join(sorted(changed))}; the head recorded {', '.join(sorted(recorded))}): "
                            "point the encoder at the model file it was trained with, or fit the head again")


def run(cfg: DictConfig) -> dict[str, Any]:
    inputs = OmegaConf.to_container(cfg.inputs, resolve=True) if not isinstance(cfg.inputs, str) else [cfg.inputs]
    if not inputs:
        raise ConfigError("inputs", "name at least one audio file or folder")
    head, info = load_head(cfg.model, allow_trust_checkpoint=bool(cfg.get("trust_checkpoint", False)))
    if "encoder" not in info:
        raise DataError(Path(cfg.model) / "head.json", "records no encoder: predict.py cannot embed new audio for it")
    files = expand_inputs([str(i) for i in inputs])  # type: ignore[union-attr]
    embedders = build_embedders(info["encoder"], cfg.device)  # checked by load_head; classes from the project
    check_same_weights(embedders, info, Path(cfg.model) / "head.json")
    rows, X, ok_rows = [], [], []
    for f in progress(files, desc="predict", unit="file"):
        try:
            wav, sr = load_audio(f)
            embs = [embed_one(encoder, encoder.frontend(wav, sr), windowing)[0] for encoder, windowing in embedders]
        except AudioError as exc:
            rows.append({"file": str(f), "label": None, "problem": exc.problem})
            continue
        short = [encoder.name for (encoder, _), e in zip(embedders, embs) if e is None]
        if short:
            rows.append({"file": str(f), "label": None,
                         "problem": f"too short or silent for the {'+'.join(short)} encoder's windows"})
            continue
        emb = np.concatenate(embs)
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
