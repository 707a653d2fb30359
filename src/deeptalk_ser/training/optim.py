"""Optimiser and learning-rate schedule of speaker-encoder training (``training.optimizer`` /
``training.scheduler``).

The reference trains with Adam at a constant 1e-4 and no weight decay (our default, so the
paper's recipe reproduces); current toolkits warm up linearly and then decay (cosine or steps)
with decoupled weight decay (AdamW) on the weight matrices only: biases, norms and GE2E's
similarity scalars are never decayed. The schedule is stepped every optimiser step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from deeptalk_ser.utils.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step")


@dataclass
class LRSchedule:
    """Factor of the base learning rate at a step: linear warm-up from ``1 / warmup_steps`` to 1,
    then constant, cosine down to ``min_lr_ratio`` at ``total_steps`` (held there after), or x
    ``gamma`` every ``step_size`` steps. A picklable callable: ``LambdaLR`` saves its state."""

    name: str = "constant"
    warmup_steps: int = 0
    total_steps: int = 0
    min_lr_ratio: float = 0.0
    step_size: int = 1000
    gamma: float = 0.5

    def __call__(self, step: int) -> float:
        if self.warmup_steps > 0 and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        after = step - self.warmup_steps
        if self.name == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, after / span)
            return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if self.name == "step":
            return self.gamma ** (after // self.step_size)
        return 1.0


def parameter_groups(named: Iterable[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict[str, Any]]:
    """Decay only matrices / kernels (ndim >= 2); biases, norm scales and scalars are not decayed.
    Without decay, one group of every parameter: the optimiser-state layout of earlier checkpoints,
    so they still resume."""
    if weight_decay == 0:
        return [{"params": [p for _, p in named if p.requires_grad]}]
    decay, keep = [], []
    for _, p in named:
        if p.requires_grad:
            (decay if p.ndim >= 2 else keep).append(p)
    groups = [{"params": decay, "weight_decay": float(weight_decay)}, {"params": keep, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def make_schedule(cfg: Mapping[str, Any] | None, max_steps: int) -> LRSchedule | None:
    """The schedule of ``training.scheduler`` (None for a constant rate without warm-up)."""
    cfg = dict(cfg or {})
    name = str(cfg.get("name") or "constant")
    if name not in SCHEDULES:
        raise ConfigError("training.scheduler.name", f"{name!r} is not one of {SCHEDULES}")
    warmup = int(cfg.get("warmup_steps") or 0)
    total = int(cfg.get("total_steps") or 0) or int(max_steps)
    if name == "cosine" and total <= warmup:
        raise ConfigError("training.scheduler.total_steps", f"cosine decay needs total steps ({total}, default "
                          f"trainer.max_steps) > warmup_steps ({warmup})")
    if name == "step" and int(cfg.get("step_size") or 0) <= 0:
        raise ConfigError("training.scheduler.step_size", "must be > 0 for step decay")
    if name == "constant" and warmup == 0:
        return None
    return LRSchedule(name=name, warmup_steps=warmup, total_steps=total,
                      min_lr_ratio=float(cfg.get("min_lr_ratio") or 0.0), step_size=int(cfg.get("step_size") or 1000),
                      gamma=float(cfg.get("gamma") if cfg.get("gamma") is not None else 0.5))


def build_optimizer(named: Iterable[tuple[str, nn.Parameter]], lr: float, optimizer: Mapping[str, Any] | None,
                    scheduler: Mapping[str, Any] | None, max_steps: int) -> Any:
    """What ``LightningModule.configure_optimizers`` returns: the optimiser, plus the per-step
    ``LambdaLR`` when a schedule is configured."""
    cfg = dict(optimizer or {})
    name = str(cfg.get("name") or "adam")
    if name not in OPTIMIZERS:
        raise ConfigError("training.optimizer.name", f"{name!r} is not one of {OPTIMIZERS}")
    wd = float(cfg.get("weight_decay") or 0.0)
    if wd < 0:
        raise ConfigError("training.optimizer.weight_decay", f"{wd} < 0")
    groups = parameter_groups(named, wd)
    if name == "adam":  # L2 added to the gradient (torch.optim.Adam's weight_decay), the reference's optimiser
        opt: torch.optim.Optimizer = torch.optim.Adam(groups, lr=lr)
    elif name == "adamw":
        opt = torch.optim.AdamW(groups, lr=lr)
    else:
        opt = torch.optim.SGD(groups, lr=lr, momentum=float(cfg.get("momentum", 0.9)), nesterov=True)
    schedule = make_schedule(scheduler, max_steps)
    if schedule is None:
        return opt
    return {"optimizer": opt,
            "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, schedule), "interval": "step"}}
