"""``train.py``: pretrain a speaker encoder on a speaker corpus with Lightning.

Composes the manifest (the data config's ``train_split``), the encoder's front end, the
speaker-balanced datamodule, the module, loggers and callbacks; resumes exactly from
``ckpt_path``. The loss is ``conf/loss``'s ``_target_``; precision, strategy and sync-BN are
plain Trainer arguments in ``conf/trainer`` (``trainer=gpu`` for bf16 autocast).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from deeptalk_ser.data.audio.frontend import AudioFrontend
from deeptalk_ser.utils.io import write_json_atomic
from deeptalk_ser.utils.loggers import build_loggers
from deeptalk_ser.runs.common import prepare_data
from deeptalk_ser.training.data import SpeakerDataModule
from deeptalk_ser.training.module import SpeakerEncoderModule


def train(cfg: DictConfig) -> dict[str, Any]:
    if cfg.encoder.get("_target_", "").rsplit(".", 1)[-1] != "DeepTalkEncoder":
        raise ValueError(f"train.py trains the DeepTalk encoder (encoder=deeptalk); got {cfg.encoder._target_}")
    L.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    data = prepare_data(cfg)
    if not data.loader.has_audio:
        raise ValueError(f"data={cfg.data.name} holds precomputed embeddings, not audio: nothing to train an encoder on")
    split = cfg.data.get("train_split", "train")
    utts = [u for u in data.utts if split is None or u.split == split]
    if not utts:
        raise ValueError(f"no utterances in split {split!r} of {cfg.data.name}")
    frontend = AudioFrontend(**OmegaConf.to_container(cfg.encoder.frontend, resolve=True))
    t = cfg.training
    if t.val_speakers < 2:
        raise ValueError("training.val_speakers must be >= 2: val/eer (checkpoint selection) needs held-out speakers")
    dm = SpeakerDataModule(utts, frontend, t.speakers_per_batch, t.utterances_per_speaker, t.crop_frames,
                           t.batches_per_epoch, t.val_speakers, seed=cfg.seed, num_workers=t.num_workers,
                           on_error=cfg.data.get("on_error", "raise"))
    loss_cfg = OmegaConf.to_container(cfg.loss, resolve=True)
    loss_name = loss_cfg.pop("name", None)  # for the record only; not a loss argument
    module = SpeakerEncoderModule(loss=instantiate(loss_cfg), lr=t.lr, grad_clip=t.grad_clip, seed=cfg.seed)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c]
    loggers = build_loggers(cfg.get("logger"))
    for lg in loggers:  # the module's own hyper-parameters are logged by Lightning
        lg.log_hyperparams({"loss": {"name": loss_name, **loss_cfg},
                            "training": OmegaConf.to_container(t, resolve=True)})
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                          use_distributed_sampler=False, _convert_="all")
    trainer.fit(module, datamodule=dm, ckpt_path=cfg.get("ckpt_path"))
    ckpt_cb = trainer.checkpoint_callback
    summary = {
        "loss": loss_name,
        "global_step": int(trainer.global_step),
        "epochs": int(trainer.current_epoch),
        "best_model_path": getattr(ckpt_cb, "best_model_path", None),
        "best_val_eer": float(ckpt_cb.best_model_score) if ckpt_cb is not None and ckpt_cb.best_model_score is not None else None,
        "last_model_path": getattr(ckpt_cb, "last_model_path", None),
        "train_utterances": len(dm.bank.utts), "train_speakers": len(dm.speaker_to_idx),
        "val_utterances": len(dm.val_utts), "skipped": dm.bank.skipped,
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
    }
    if trainer.is_global_zero:
        write_json_atomic(out / "train_summary.json", summary)
        print(f"[train] step {summary['global_step']}, best val/eer {summary['best_val_eer']}, checkpoints in {out}")
    return summary
