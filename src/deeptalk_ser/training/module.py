"""LightningModule for speaker-encoder pretraining (DeepTalk with a :class:`SpeakerLoss`).

A batch is P speakers x K crops, ordered speaker by speaker (see SpeakerBatchSampler), so the
GE2E loss can view it as (P, K, dim). Step throughput is ``ThroughputMonitor``'s
(``conf/callbacks/default.yaml``). Validation embeds whole held-out utterances with the
reference's 200-frame partials and reports the EER of all target pairs plus as many sampled
non-target pairs (fixed seed), kept per epoch in :attr:`SpeakerEncoderModule.val_history`
(saved in checkpoints, so a resumed run keeps its curve) for the model card. The optimiser and
learning-rate schedule are the partials of ``training.optimizer`` / ``training.scheduler``
(:mod:`deeptalk_ser.training.optim`); gradient clipping is Lightning's own
(``trainer.gradient_clip_val``, ``conf/trainer/default.yaml``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
import numpy as np
import torch

from deeptalk_ser.embedding.encoders.deeptalk import DeepTalkNet, build_net
from deeptalk_ser.embedding.encoders.deepvox_fast import use_deepvox
from deeptalk_ser.training.losses import SpeakerLoss
from deeptalk_ser.training.optim import OptimizerFactory, SchedulerFactory, build_optimizer
from deeptalk_ser.data.trials import generate_trials
from deeptalk_ser.evaluation.verification import score_verification

log = logging.getLogger(__name__)


def batch_utterances(batch: Any) -> int:
    """Utterances in a batch, for ``ThroughputMonitor``: P x K crops, or 1 validation utterance."""
    frames = batch[0]
    return len(frames) if isinstance(frames, torch.Tensor) else 1


class SpeakerEncoderModule(L.LightningModule):
    #: Not counted; set so that ThroughputMonitor reports no FLOPs instead of warning about them.
    flops_per_batch: int | None = None

    def __init__(self, loss: SpeakerLoss, optimizer: OptimizerFactory, scheduler: SchedulerFactory | None,
                 seed: int = 0, val_trial_seed: int = 0, n_speakers: int | None = None,
                 deepvox: str = "fast") -> None:
        super().__init__()
        # the loss is a module (saved in the state dict); the optimiser and schedule are callables,
        # kept out of the checkpoint's hyper-parameters, which stay plain values (the run's
        # train_summary.json and the logger hold the recipe)
        self.save_hyperparameters(ignore=["loss", "optimizer", "scheduler"])
        self.optimizer, self.scheduler = optimizer, scheduler
        # ``deepvox``: the filterbank's formulation (deepvox_fast.IMPLEMENTATIONS); same weights and
        # keys, equal within float rounding (benchmarks/train_speed.py asserts outputs and gradients)
        self.net: DeepTalkNet = use_deepvox(build_net(seed), deepvox)  # type: ignore[assignment]
        loss.bind(self.net, n_speakers=n_speakers)
        self.loss_fn = loss  # registered after the net: parameter (and optimiser state) order as before
        self._val_emb: dict[int, np.ndarray] = {}
        #: one row per validation epoch: step, val/eer, val/min_dcf_p0.01 (NaN when not computable)
        self.val_history: list[dict[str, float]] = []
        self.train_seconds = 0.0  # wall time spent in fit, over every resume
        self._fit_start: float | None = None

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames)

    def compute_loss(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(emb, labels)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        frames, labels = batch
        self.loss_fn.set_step(int(self.global_step))
        loss = self.compute_loss(self.net(frames), labels)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        for name, value in self.loss_fn.metrics().items():
            self.log(f"train/{name}", value, on_step=True)
        return loss

    def configure_optimizers(self) -> Any:
        max_steps = int(self.trainer.max_steps) if self._trainer is not None else -1
        return build_optimizer(self.named_parameters(), self.optimizer, self.scheduler, max_steps=max_steps)

    # -- bookkeeping kept in checkpoints: validation curve and wall time ------------------------

    def on_train_start(self) -> None:
        self._fit_start = time.monotonic()

    def elapsed_seconds(self) -> float:
        """Training wall time so far, including the runs this one resumed."""
        now = time.monotonic()
        return self.train_seconds + (now - self._fit_start if self._fit_start is not None else 0.0)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["deeptalk"] = {"val_history": list(self.val_history), "train_seconds": self.elapsed_seconds()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        extra = checkpoint.get("deeptalk") or {}
        self.val_history = list(extra.get("val_history", []))
        self.train_seconds = float(extra.get("train_seconds", 0.0))

    # -- validation: EER on held-out speakers ------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        self._val_emb = {}

    def validation_step(self, item: tuple[int, np.ndarray], batch_idx: int) -> None:
        from deeptalk_ser.embedding.encoders.deeptalk import DeepTalkEncoder

        i, wav = item
        emb = DeepTalkEncoder.embed_with_net(self.net, wav)
        if emb is not None:
            self._val_emb[i] = emb

    def on_validation_epoch_end(self) -> None:
        dm = self.trainer.datamodule
        utts = [dm.val_utts[i] for i in sorted(self._val_emb)]
        try:
            if len({u.speaker for u in utts}) < 2:
                raise ValueError(f"{len(utts)} held-out utterance(s) got an embedding, from fewer than 2 speakers")
            emb = np.stack([self._val_emb[i] for i in sorted(self._val_emb)])
            trials = generate_trials(utts, None, seed=self.hparams.val_trial_seed)
            res = score_verification(emb, {u.id: r for r, u in enumerate(utts)}, trials)
        except ValueError as exc:  # no target pair, or too few embedded speakers: say so, keep training
            # NaN never counts as an improvement for ModelCheckpoint(mode=min); last.ckpt is still written
            if not self.trainer.sanity_checking:  # the sanity check sees 2 utterances: expected there
                log.warning("val/eer not computable this epoch (%s); raise training.val_speakers or check the "
                            "held-out speakers' audio", exc)
            self.log("val/eer", float("nan"), prog_bar=True, sync_dist=False)
            self._record_val(float("nan"), float("nan"))
            return
        self.log("val/eer", float(res["eer"]), prog_bar=True, sync_dist=False)
        self.log("val/min_dcf_p0.01", float(res["min_dcf"]["p0.01"]), sync_dist=False)
        self._record_val(float(res["eer"]), float(res["min_dcf"]["p0.01"]))

    def _record_val(self, eer: float, min_dcf: float) -> None:
        if self._trainer is not None and not self.trainer.sanity_checking:
            self.val_history.append({"step": int(self.global_step), "eer": eer, "min_dcf_p0.01": min_dcf,
                                     "train_seconds": round(self.elapsed_seconds(), 1)})
