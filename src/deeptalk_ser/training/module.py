"""LightningModule for speaker-encoder pretraining (DeepTalk with a :class:`SpeakerLoss`).

A batch is P speakers x K crops, ordered speaker by speaker (see SpeakerBatchSampler), so the
GE2E loss can view it as (P, K, dim). Step throughput is ``ThroughputMonitor``'s
(``conf/callbacks/default.yaml``). Validation embeds whole held-out utterances with the
reference's 200-frame partials and reports the EER of all target pairs plus as many sampled
non-target pairs (fixed seed).
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import numpy as np
import torch

from deeptalk_ser.embedding.encoders.deeptalk import DeepTalkNet, build_net
from deeptalk_ser.training.losses import SpeakerLoss
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

    def __init__(self, loss: SpeakerLoss, lr: float = 1e-4, grad_clip: float = 3.0, seed: int = 0,
                 val_trial_seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["loss"])  # the loss is a module: saved in the state dict
        self.net: DeepTalkNet = build_net(seed)
        loss.bind(self.net)
        self.loss_fn = loss  # registered after the net: parameter (and optimiser state) order as before
        self._val_emb: dict[int, np.ndarray] = {}

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames)

    def compute_loss(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(emb, labels)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        frames, labels = batch
        loss = self.compute_loss(self.net(frames), labels)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        for name, value in self.loss_fn.metrics().items():
            self.log(f"train/{name}", value, on_step=True)
        return loss

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # global L2-norm clipping at grad_clip (reference: clip_grad_norm_(..., 3))
        self.clip_gradients(optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

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
            log.warning("val/eer not computable this epoch (%s); raise training.val_speakers or check the "
                        "held-out speakers' audio", exc)
            self.log("val/eer", float("nan"), prog_bar=True, sync_dist=False)
            return
        self.log("val/eer", float(res["eer"]), prog_bar=True, sync_dist=False)
        self.log("val/min_dcf_p0.01", float(res["min_dcf"]["p0.01"]), sync_dist=False)
