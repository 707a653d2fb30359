"""``train.py``: pretrain a speaker encoder on a speaker corpus with Lightning.

Every training object is built from its config node: the speaker-balanced data module from
``datamodule`` (the run supplies the ``data.train_split`` utterances and the encoder's front end),
the optimiser and schedule from the ``_partial_`` nodes ``training.optimizer`` /
``training.scheduler``, the loss from ``conf/loss``, the Trainer (precision, strategy, sync-BN,
gradient clipping) from ``conf/trainer``. The run starts from ``training.init_checkpoint``
(null: a fresh network) and resumes exactly from ``ckpt_path``. The training utterances go
through the front end once into the on-disk training store (``training/crop_store.py``) before
the Trainer is built; ``prepare_only=true`` stops there. After fit, rank 0 exports the best
checkpoint to ``<run>/encoder.pt`` with a ``MODEL_CARD.md`` written from the run
(``training/model_card.py``).
"""

from __future__ import annotations

import logging
import math
import os
import platform
from pathlib import Path
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import DeviceStatsMonitor, LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

from deeptalk_ser.data.audio.frontend import AudioFrontend
from deeptalk_ser.embedding.encoders.deeptalk import load_checkpoint
from deeptalk_ser.utils.errors import RUN_DIR, ConfigError, stage
from deeptalk_ser.utils.io import write_json_atomic
from deeptalk_ser.utils.loggers import build_loggers
from deeptalk_ser.utils.progress import progress_enabled
from deeptalk_ser.runs.common import check_trainer, prepare_data
from deeptalk_ser.training.crop_store import StoreReport
from deeptalk_ser.training.data import SpeakerDataModule
from deeptalk_ser.training.export import export_with_card
from deeptalk_ser.training.module import SpeakerEncoderModule
from deeptalk_ser.training.optim import OptimizerFactory, SchedulerFactory, check_optimizer
from deeptalk_ser.utils.threads import configure_threads_from_config

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Check the config, build the training store, fit, and leave the summary, the exported
    encoder and its card; returns the summary (``train_summary.json``)."""
    optimizer, scheduler = check_config(cfg)
    L.seed_everything(cfg.seed, workers=True)
    configure_threads_from_config(cfg, "training.num_workers")  # runtime.torch_threads: never more threads than cores
    out = Path(cfg.paths.output_dir)
    data = prepare_data(cfg)
    dm = build_datamodule(cfg, data)
    # Before the Trainer exists: under DDP every process runs this; a file lock on the store lets
    # exactly one of them build it while the others wait, then all open the finished store.
    with stage("training store", dm.store_dir):
        store_report = dm.prepare_store()
    if cfg.prepare_only:
        return prepared_only(store_report, out)
    module = build_module(cfg, optimizer, scheduler, n_speakers=store_report.n_speakers)
    trainer = build_trainer(cfg)
    with stage("training", out, RUN_DIR):  # checkpoints
        trainer.fit(module, datamodule=dm, ckpt_path=cfg.ckpt_path)
    summary = run_summary(cfg, trainer, module, dm, data, store_report)
    if trainer.is_global_zero:
        write_results(summary, out)
    return summary


# ----------------------------------------------------------------------------- before any data


def check_config(cfg: DictConfig) -> tuple[OptimizerFactory, SchedulerFactory | None]:
    """Stop at a config that cannot train before the manifest and the store are built (minutes
    to hours on a real corpus): the encoder, the initial weights, the held-out speakers, every
    Trainer argument (``runs/common.py``) and the optimiser / schedule, which are built once on a
    dummy weight. Returns the ``training.optimizer`` / ``training.scheduler`` partials."""
    if cfg.encoder._target_.rsplit(".", 1)[-1] != "DeepTalkEncoder":
        raise ConfigError("encoder", f"train.py trains the DeepTalk encoder (encoder=deeptalk); got {cfg.encoder._target_}")
    if cfg.encoder.checkpoint != cfg.training.init_checkpoint:
        # one rule wherever the value was set (command line or experiment file)
        raise ConfigError("encoder.checkpoint", f"train.py starts from training.init_checkpoint "
                          f"({cfg.training.init_checkpoint}), not encoder.checkpoint ({cfg.encoder.checkpoint}): set "
                          f"training.init_checkpoint=<file> to fine-tune; encoder.checkpoint is what extract.py and "
                          "evaluate.py load")
    if cfg.training.val_speakers < 2:
        raise ConfigError("training.val_speakers", "must be >= 2: val/eer (checkpoint selection) needs held-out speakers")
    trainer_args = dict(OmegaConf.to_container(cfg.trainer, resolve=True))  # type: ignore[arg-type]
    target = trainer_args.pop("_target_")
    check_trainer(trainer_args, target)
    optimizer = _partial_from(cfg.training, "optimizer")
    scheduler = _partial_from(cfg.training, "scheduler")
    check_optimizer(optimizer, scheduler, max_steps=cfg.trainer.max_steps)
    return optimizer, scheduler


def _partial_from(training: DictConfig, key: str) -> Any:
    """``training.<key>`` instantiated (a ``_partial_`` node: the callable, not yet called); a
    ``_target_`` that cannot be imported is a :class:`ConfigError` naming the key."""
    try:
        return instantiate(training[key], _convert_="all")
    except InstantiationException as exc:
        raise ConfigError(f"training.{key}._target_", " ".join(str(exc).split())) from exc


# ----------------------------------------------------------------------------- the training objects


def build_datamodule(cfg: DictConfig, data: Any) -> SpeakerDataModule:
    """The ``datamodule`` node, given what no config can hold: the utterances of
    ``data.train_split`` (null: all of them) and the encoder's front end."""
    if not data.loader.has_audio:
        raise ConfigError("data", f"data={cfg.data.name} holds precomputed embeddings, not audio: nothing to train an encoder on")
    split = cfg.data.train_split
    utts = [u for u in data.utts if split is None or u.split == split]
    if not utts:
        raise ConfigError("data.train_split", f"no utterances in split {split!r} of {cfg.data.name}")
    frontend = AudioFrontend(**OmegaConf.to_container(cfg.encoder.frontend, resolve=True))
    return instantiate(cfg.datamodule, _convert_="all")(utts, frontend)


def loss_recipe(cfg: DictConfig) -> tuple[str, dict[str, Any]]:
    """``conf/loss``'s name (for the record only) and the node the loss is instantiated from."""
    loss_cfg = OmegaConf.to_container(cfg.loss, resolve=True)
    assert isinstance(loss_cfg, dict)
    return str(loss_cfg.pop("name")), loss_cfg


def build_module(cfg: DictConfig, optimizer: OptimizerFactory, scheduler: SchedulerFactory | None,
                 n_speakers: int) -> SpeakerEncoderModule:
    """The module (the AAM head is sized by the store's ``n_speakers``), from the weights of
    ``training.init_checkpoint`` unless the run resumes (``ckpt_path`` restores its own), and
    compiled in place when ``runtime.compile`` (the state_dict keys stay the network's)."""
    module = SpeakerEncoderModule(loss=instantiate(loss_recipe(cfg)[1]), optimizer=optimizer, scheduler=scheduler,
                                  seed=cfg.seed, n_speakers=n_speakers, deepvox=cfg.training.deepvox)
    init = cfg.training.init_checkpoint
    if init and not cfg.ckpt_path:
        what = load_checkpoint(module.net, init, trust=bool(cfg.encoder.trust_checkpoint))
        log.info("fine-tuning from %s (%s)", init, what)
    if cfg.runtime.compile:
        module.net.compile(mode=cfg.runtime.compile_mode)
    return module


#: Lightning callbacks that only feed an experiment logger, and raise without one
LOGGER_ONLY_CALLBACKS = (LearningRateMonitor, DeviceStatsMonitor)


def without_logger_only(callbacks: list[Any]) -> list[Any]:
    """``logger=none``: the callbacks less those that only feed a logger (Lightning refuses to
    train with them otherwise); checkpoints and val/eer do not need a logger."""
    dropped = [c for c in callbacks if isinstance(c, LOGGER_ONLY_CALLBACKS)]
    if dropped:
        log.info("no experiment logger (logger=none): leaving out %s, which only feed%s one",
                 ", ".join(type(c).__name__ for c in dropped), "s" if len(dropped) == 1 else "")
    return [c for c in callbacks if not isinstance(c, LOGGER_ONLY_CALLBACKS)]


def build_trainer(cfg: DictConfig) -> L.Trainer:
    """``conf/trainer`` with the callbacks and loggers; the loggers also get the recipe (the
    module's own hyper-parameters are plain values that Lightning logs itself). The sampler is
    ours (speaker-balanced, rank-aware), so Lightning must not replace it."""
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values() if c and "_target_" in c]
    loggers = build_loggers(cfg.logger)
    if not loggers:
        callbacks = without_logger_only(callbacks)
    name, loss_cfg = loss_recipe(cfg)
    for lg in loggers:
        lg.log_hyperparams({"loss": {"name": name, **loss_cfg},
                            "training": OmegaConf.to_container(cfg.training, resolve=True)})
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, use_distributed_sampler=False,
                       enable_progress_bar=progress_enabled(cfg.trainer.enable_progress_bar), _convert_="all")


# ----------------------------------------------------------------------------- what the run leaves


def _hydra_overrides() -> list[str] | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except ValueError:  # not inside a Hydra app (tests composing the config)
        return None


def _finite_or_none(value: Any) -> float | None:
    """A checkpoint score for JSON: None when there is none or it is not finite (val/eer not computable)."""
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def prepared_only(store_report: StoreReport, out: Path) -> dict[str, Any]:
    """``prepare_only=true``: record the training store and stop (nothing is trained)."""
    summary = {"prepare_only": True, "train_store": store_report.summary()}
    write_json_atomic(out / "train_summary.json", summary)
    print(f"[train] training store {store_report.path}: {store_report.n_utterances} utterances of "
          f"{store_report.n_speakers} speakers, {len(store_report.skipped)} skipped "
          f"({'reused' if store_report.reused else 'built'})")
    return summary


def run_summary(cfg: DictConfig, trainer: L.Trainer, module: SpeakerEncoderModule, dm: SpeakerDataModule,
                data: Any, store_report: StoreReport) -> dict[str, Any]:
    """``train_summary.json``: the result, the data, and the recipe as composed (loss, training
    node, gradient clipping, seed), from which the model card and the exported encoder's
    provenance are written."""
    ckpt_cb = trainer.checkpoint_callback
    name, loss_cfg = loss_recipe(cfg)
    return {
        "loss": name,
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
        "init_checkpoint": cfg.training.init_checkpoint,
        "data": {"name": cfg.data.name, "train_split": cfg.data.train_split, "val_speakers": cfg.training.val_speakers,
                 "hours": store_report.hours},
        "recipe": {"loss": loss_cfg, "training": OmegaConf.to_container(cfg.training, resolve=True),
                   "gradient_clip": {"val": cfg.trainer.gradient_clip_val,
                                     "algorithm": cfg.trainer.gradient_clip_algorithm},
                   "seed": cfg.seed},
        "command": " ".join(["python train.py", *(_hydra_overrides() or [])]),
        "hardware": f"{trainer.num_devices * trainer.num_nodes} x {trainer.accelerator.__class__.__name__} "
                    f"({platform.machine()}, {os.cpu_count()} cores)",
        "run_dir": str(cfg.paths.output_dir),
    }


def write_results(summary: dict[str, Any], out: Path) -> None:
    """Rank 0: export the best checkpoint with its model card (when val/eer was computable) and
    write ``train_summary.json``."""
    with stage("results", out, RUN_DIR):
        if summary["best_model_path"] and summary["best_val_eer"] is not None:
            encoder, card = export_with_card(summary, out / "encoder.pt")
            summary["exported_encoder"], summary["model_card"] = str(encoder), str(card)
        write_json_atomic(out / "train_summary.json", summary)
    print(f"[train] step {summary['global_step']}, best val/eer {summary['best_val_eer']}, checkpoints in {out} "
          f"({summary['n_skipped_at_prepare']} skipped at prepare, {len(summary['skipped'])} left out of the "
          "training store; listed in train_summary.json)")
