"""LightningModule for speaker-encoder pretraining (DeepTalk with triplet or GE2E loss).

A batch is P speakers x K crops, ordered speaker by speaker (see SpeakerBatchSampler), so the
GE2E loss can view it as (P, K, dim). Validation embeds whole held-out utterances with the
reference's 200-frame partials and reports the EER of all target pairs plus as many sampled
non-target pairs (fixed seed).
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from deeptalk_ser.embedding.encoders.deeptalk import DeepTalkNet, build_net
from deeptalk_ser.training.losses import GE2ELoss, TripletLoss
from deeptalk_ser.data.trials import generate_trials
from deeptalk_ser.evaluation.verification import score_verification


class SpeakerEncoderModule(L.LightningModule):
    def __init__(self, loss: dict[str, Any], lr: float = 1e-4, grad_clip: float = 3.0,
                 speakers_per_batch: int = 32, utterances_per_speaker: int = 10, seed: int = 0,
                 val_trial_seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net: DeepTalkNet = build_net(seed)
        name = loss.get("name")
        if name == "ge2e":
            # the GE2E scalars live in the network, as in the reference checkpoints
            self.loss_fn: nn.Module = GE2ELoss(weight=self.net.similarity_weight, bias=self.net.similarity_bias,
                                               grad_scale=loss.get("grad_scale", 0.01))
        elif name == "triplet":
            self.loss_fn = TripletLoss(margin=loss.get("margin", 0.2), mining=loss.get("mining", "batch_hard"),
                                       distance=loss.get("distance", "euclidean"))
        else:
            raise ValueError(f"loss.name must be 'triplet' or 'ge2e', got {name!r}")
        self.loss_name = name
        self.automatic_optimization = True
        self._t_last: float | None = None
        self._val_emb: dict[int, np.ndarray] = {}

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames)

    def compute_loss(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.loss_name == "ge2e":
            P, K = self.hparams.speakers_per_batch, self.hparams.utterances_per_speaker
            return self.loss_fn(emb.reshape(P, K, -1))
        return self.loss_fn(emb, labels)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        frames, labels = batch
        loss = self.compute_loss(self.net(frames), labels)
        now = time.perf_counter()
        if self._t_last is not None:
            dt = now - self._t_last
            self.log("train/s_per_step", dt, on_step=True, prog_bar=False)
            self.log("train/utt_per_s", len(labels) * self.trainer.world_size / dt, on_step=True, prog_bar=True)
        self._t_last = now
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        if self.loss_name == "ge2e":
            self.log("train/ge2e_w", self.net.similarity_weight.detach().float().squeeze(), on_step=True)
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
        if len({u.speaker for u in utts}) < 2:
            return
        emb = np.stack([self._val_emb[i] for i in sorted(self._val_emb)])
        trials = generate_trials(utts, None, seed=self.hparams.val_trial_seed)
        res = score_verification(emb, {u.id: r for r, u in enumerate(utts)}, trials)
        self.log("val/eer", float(res["eer"]), prog_bar=True, sync_dist=False)
        self.log("val/min_dcf_p0.01", float(res["min_dcf"]["p0.01"]), sync_dist=False)

    def on_train_epoch_start(self) -> None:
        self._t_last = None
