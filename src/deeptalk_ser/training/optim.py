"""Optimiser and learning-rate schedule of speaker-encoder training: what the ``_partial_`` nodes
``training.optimizer`` / ``training.scheduler`` of ``conf/train.yaml`` become.

``training.optimizer`` is any ``torch.optim`` class as a partial (``torch.optim.Adam`` at a
constant 1e-4 without weight decay: the reference, our default); the module calls it with
:func:`parameter_groups`, so weight decay (the partial's ``weight_decay``) reaches the weight
matrices only: biases, norms and GE2E's similarity scalars are never decayed.
``training.scheduler`` is :func:`warmup_lambda_lr` as a partial: linear warm-up, then constant,
cosine or step decay, stepped every optimiser step. :func:`check_optimizer` builds both once on
a dummy parameter so that a bad value stops ``train.py`` before any data is prepared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import nn

from deeptalk_ser.utils.errors import ConfigError

SCHEDULES = ("constant", "cosine", "step")

#: ``training.optimizer``: the parameter groups -> the optimiser
OptimizerFactory = Callable[[list[dict[str, Any]]], torch.optim.Optimizer]
#: ``training.scheduler``: (optimiser, max_steps=trainer.max_steps) -> LambdaLR, or None for a constant rate
SchedulerFactory = Callable[..., "torch.optim.lr_scheduler.LambdaLR | None"]


@dataclass
class LRSchedule:
    """Factor of the base learning rate at a step: linear warm-up from ``1 / warmup_steps`` to 1,
    then constant, cosine down to ``min_lr_ratio`` at ``total_steps`` (held there after), or x
    ``gamma`` every ``step_size`` steps. A picklable callable: ``LambdaLR`` saves its fields in
    the checkpoint (so they must keep their names for older checkpoints to resume)."""

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


def weight_decay_of(optimizer: OptimizerFactory) -> float:
    """The ``weight_decay`` the optimiser partial was given (0 when it names none): what
    :func:`parameter_groups` applies to the weight matrices."""
    return float(getattr(optimizer, "keywords", {}).get("weight_decay") or 0.0)


def build_optimizer(named: Iterable[tuple[str, nn.Parameter]], optimizer: OptimizerFactory,
                    scheduler: SchedulerFactory | None, max_steps: int) -> Any:
    """What ``LightningModule.configure_optimizers`` returns: ``optimizer`` called with the
    parameter groups, plus the per-step ``LambdaLR`` of ``scheduler`` when it makes one."""
    opt = optimizer(parameter_groups(named, weight_decay_of(optimizer)))
    sched = scheduler(opt, max_steps=max_steps) if scheduler is not None else None
    if sched is None:
        return opt
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def lr_schedule(name: str, warmup_steps: int, total_steps: int | None, min_lr_ratio: float, step_size: int,
                gamma: float, max_steps: int) -> LRSchedule | None:
    """The schedule of ``training.scheduler`` (None for a constant rate without warm-up: no
    scheduler at all, as the reference trains). ``total_steps`` null: ``trainer.max_steps``."""
    if name not in SCHEDULES:
        raise ConfigError("training.scheduler.name", f"{name!r} is not one of {SCHEDULES}")
    warmup = int(warmup_steps or 0)
    total = int(total_steps or 0) or int(max_steps)
    if name == "cosine" and total <= warmup:
        raise ConfigError("training.scheduler.total_steps", f"cosine decay needs total steps ({total}, default "
                          f"trainer.max_steps) > warmup_steps ({warmup})")
    if name == "step" and int(step_size or 0) <= 0:
        raise ConfigError("training.scheduler.step_size", "must be > 0 for step decay")
    if name == "constant" and warmup == 0:
        return None
    return LRSchedule(name=name, warmup_steps=warmup, total_steps=total, min_lr_ratio=float(min_lr_ratio),
                      step_size=int(step_size), gamma=float(gamma))


def warmup_lambda_lr(optimizer: torch.optim.Optimizer, max_steps: int, name: str, warmup_steps: int,
                     total_steps: int | None, min_lr_ratio: float, step_size: int,
                     gamma: float) -> torch.optim.lr_scheduler.LambdaLR | None:
    """``training.scheduler``'s ``_target_``: a ``LambdaLR`` of :class:`LRSchedule` over
    ``optimizer`` (None when the rate is constant without warm-up). Every argument but the
    optimiser and ``max_steps`` (``trainer.max_steps``, supplied by the module) comes from the
    YAML node, which holds them all."""
    schedule = lr_schedule(name, warmup_steps, total_steps, min_lr_ratio, step_size, gamma, max_steps)
    return None if schedule is None else torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def check_optimizer(optimizer: OptimizerFactory, scheduler: SchedulerFactory | None, max_steps: int) -> None:
    """Build the optimiser and schedule once on a dummy weight and drop them, so that an argument
    the optimiser refuses (``lr=-1``, ``momentum`` on Adam) or a schedule that cannot work stops
    the run as a :class:`ConfigError` naming the key, before the training store is built."""
    try:
        opt = optimizer(parameter_groups([("w", nn.Parameter(torch.zeros(2, 2)))], weight_decay_of(optimizer)))
    except (TypeError, ValueError) as exc:
        raise ConfigError("training.optimizer", " ".join(str(exc).split())) from exc
    if scheduler is not None:
        try:
            scheduler(opt, max_steps=max_steps)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError("training.scheduler", " ".join(str(exc).split())) from exc
