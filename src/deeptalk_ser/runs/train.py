"""``train.py``: pretrain a speaker encoder on a speaker corpus with Lightning.

Composes the manifest (the data config's ``train_split``), the encoder's front end, the
speaker-balanced datamodule, the module, loggers and callbacks; resumes exactly from
``ckpt_path``. Mixed precision selects itself: bf16 autocast on a GPU, fp32 on the CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from deeptalk_ser.data.audio.frontend import AudioFrontend
from deeptalk_ser.utils.io import write_json_atomic
from deeptalk_ser.utils.loggers import build_loggers
from deeptalk_ser.runs.common import prepare_data
from deeptalk_ser.training.data import SpeakerDataModule
from deeptalk_ser.training.module import SpeakerEncoderModule

log = logging.getLogger(__name__)


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """``auto``: bf16 autocast when training runs on a GPU, fp32 otherwise."""
    if precision != "auto":
        return precision
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "bf16-mixed" if on_gpu else "32-true"


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
    module = SpeakerEncoderModule(loss=OmegaConf.to_container(cfg.loss, resolve=True), lr=t.lr, grad_clip=t.grad_clip,
                                  speakers_per_batch=t.speakers_per_batch, utterances_per_speaker=t.utterances_per_speaker,
                                  seed=cfg.seed)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c]
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_kwargs["precision"] = resolve_precision(trainer_kwargs.get("precision", "auto"),
                                                    str(trainer_kwargs.get("accelerator", "auto")))
    if trainer_kwargs.get("sync_batchnorm") and (trainer_kwargs.get("accelerator") == "cpu" or not torch.cuda.is_available()):
        log.info("sync_batchnorm needs CUDA; off for this CPU run")  # GPU runs keep it
        trainer_kwargs["sync_batchnorm"] = False
    trainer = instantiate(trainer_kwargs, callbacks=callbacks, logger=build_loggers(cfg.get("logger")) or False,
                          use_distributed_sampler=False, _convert_="all")
    trainer.fit(module, datamodule=dm, ckpt_path=cfg.get("ckpt_path"))
    ckpt_cb = trainer.checkpoint_callback
    summary = {
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
