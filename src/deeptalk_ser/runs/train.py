"""``train.py``: pretrain a speaker encoder on a speaker corpus with Lightning.

Composes the manifest (the data config's ``train_split``), the encoder's front end, the
speaker-balanced datamodule, the module, loggers and callbacks; resumes exactly from
``ckpt_path``. The loss is ``conf/loss``'s ``_target_``; precision, strategy and sync-BN are
plain Trainer arguments in ``conf/trainer`` (``trainer=gpu`` for bf16 autocast).
The training utterances go through the front end once into the on-disk training store
(``training/crop_store.py``) before the Trainer is built; ``prepare_only=true`` stops there.
After fit, rank 0 exports the best checkpoint to ``<run>/encoder.pt`` with a ``MODEL_CARD.md``
written from the run (``training/model_card.py``).
"""

from __future__ import annotations

import logging
import math
import os
import platform
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from deeptalk_ser.data.audio.frontend import AudioFrontend
from deeptalk_ser.embedding.encoders.deeptalk import load_checkpoint
from deeptalk_ser.utils.io import write_json_atomic
from deeptalk_ser.utils.loggers import build_loggers
from deeptalk_ser.runs.common import prepare_data
from deeptalk_ser.training.augment import CropAugment
from deeptalk_ser.training.data import SpeakerDataModule
from deeptalk_ser.training.export import export_with_card
from deeptalk_ser.training.module import SpeakerEncoderModule
from deeptalk_ser.utils.threads import configure_threads_from_config

log = logging.getLogger(__name__)


def init_checkpoint(cfg: DictConfig) -> str | None:
    """The weights to fine-tune from: ``training.init_checkpoint``, or ``encoder.checkpoint`` when the
    user set it on the command line (its default, the shipped checkpoint, is for extraction:
    training starts from a fresh network unless asked)."""
    if cfg.training.get("init_checkpoint"):
        return str(cfg.training.init_checkpoint)
    overrides = _hydra_overrides()
    if overrides is None:
        return None
    if any(o.split("=", 1)[0].lstrip("+~") == "encoder.checkpoint" for o in overrides):
        return str(cfg.encoder.checkpoint) if cfg.encoder.get("checkpoint") else None
    return None


def _hydra_overrides() -> list[str] | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except ValueError:  # not inside a Hydra app (tests composing the config)
        return None


def init_augment(t: DictConfig) -> CropAugment | None:
    """``training.augment`` as a :class:`CropAugment` (None when absent or every probability is 0)."""
    cfg = t.get("augment")
    if not cfg:
        return None
    aug = CropAugment(**{k: (tuple(v) if isinstance(v, list) else v)
                         for k, v in OmegaConf.to_container(cfg, resolve=True).items()})
    return aug if aug.active else None


def _finite_or_none(value: Any) -> float | None:
    """A checkpoint score for JSON: None when there is none or it is not finite (val/eer not computable)."""
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def train(cfg: DictConfig) -> dict[str, Any]:
    if cfg.encoder.get("_target_", "").rsplit(".", 1)[-1] != "DeepTalkEncoder":
        raise ValueError(f"train.py trains the DeepTalk encoder (encoder=deeptalk); got {cfg.encoder._target_}")
    L.seed_everything(cfg.seed, workers=True)
    configure_threads_from_config(cfg, "training.num_workers")  # runtime.torch_threads: never more threads than cores
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
    store_cfg = cfg.get("train_store") or {}
    dm = SpeakerDataModule(utts, frontend, t.speakers_per_batch, t.utterances_per_speaker, t.crop_frames,
                           t.batches_per_epoch, t.val_speakers,
                           store_dir=store_cfg.get("dir") or Path(cfg.paths.cache_dir) / "train_store" / cfg.data.name,
                           seed=cfg.seed, num_workers=t.num_workers, pin_memory=t.get("pin_memory", False),
                           persistent_workers=t.get("persistent_workers", False),
                           prefetch_factor=t.get("prefetch_factor", None), on_error=cfg.data.get("on_error", "raise"),
                           shard_size=store_cfg.get("shard_size", 1000), prepare_workers=store_cfg.get("num_workers", 1),
                           augment=init_augment(t))
    # Before the Trainer exists: under DDP every process runs this; a file lock on the store lets
    # exactly one of them build it while the others wait, then all open the finished store.
    store_report = dm.prepare_store()
    if cfg.get("prepare_only", False):
        summary = {"prepare_only": True, "train_store": store_report.summary()}
        write_json_atomic(out / "train_summary.json", summary)
        print(f"[train] training store {store_report.path}: {store_report.n_utterances} utterances of "
              f"{store_report.n_speakers} speakers, {len(store_report.skipped)} skipped "
              f"({'reused' if store_report.reused else 'built'})")
        return summary
    loss_cfg = OmegaConf.to_container(cfg.loss, resolve=True)
    loss_name = loss_cfg.pop("name", None)  # for the record only; not a loss argument
    module = SpeakerEncoderModule(loss=instantiate(loss_cfg), lr=t.lr, grad_clip=t.grad_clip, seed=cfg.seed,
                                  n_speakers=store_report.n_speakers,
                                  optimizer=OmegaConf.to_container(t.optimizer, resolve=True) if t.get("optimizer") else None,
                                  scheduler=OmegaConf.to_container(t.scheduler, resolve=True) if t.get("scheduler") else None)
    init = init_checkpoint(cfg)
    if init and not cfg.get("ckpt_path"):  # a resume restores its own weights
        what = load_checkpoint(module.net, init, trust=bool(cfg.encoder.get("trust_checkpoint", False)))
        log.info("fine-tuning from %s (%s)", init, what)
    runtime = cfg.get("runtime") or {}
    if runtime.get("compile", False):  # in place: the state_dict keys (checkpoints, export) stay those of the net
        module.net.compile(mode=runtime.get("compile_mode"))
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
        "best_val_eer": _finite_or_none(ckpt_cb.best_model_score if ckpt_cb is not None else None),
        "last_model_path": getattr(ckpt_cb, "last_model_path", None),
        "train_utterances": store_report.n_utterances, "train_speakers": store_report.n_speakers,
        "val_utterances": len(dm.val_utts), "skipped": store_report.skipped,
        "skipped_at_prepare": data.report.skipped, "n_skipped_at_prepare": len(data.report.skipped),
        "train_store": store_report.summary(),
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
        "train_seconds": round(module.elapsed_seconds(), 1), "val_history": module.val_history,
        "init_checkpoint": init, "data": {"name": cfg.data.name, "train_split": split, "val_speakers": t.val_speakers,
                                          "hours": store_report.hours},
        "recipe": {"loss": loss_cfg, "training": OmegaConf.to_container(t, resolve=True), "seed": cfg.seed},
        "command": " ".join(["python train.py", *(_hydra_overrides() or [])]),
        "hardware": f"{trainer.num_devices * trainer.num_nodes} x {trainer.accelerator.__class__.__name__} "
                    f"({platform.machine()}, {os.cpu_count()} cores)",
        "run_dir": str(out),
    }
    if trainer.is_global_zero:
        if summary["best_model_path"] and summary["best_val_eer"] is not None:
            encoder, card = export_with_card(summary, out / "encoder.pt")
            summary["exported_encoder"], summary["model_card"] = str(encoder), str(card)
        write_json_atomic(out / "train_summary.json", summary)
        print(f"[train] step {summary['global_step']}, best val/eer {summary['best_val_eer']}, checkpoints in {out} "
              f"({summary['n_skipped_at_prepare']} skipped at prepare, {len(summary['skipped'])} left out of the "
              "training store; listed in train_summary.json)")
    return summary
