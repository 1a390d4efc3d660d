"""Learning-rate schedules, stepped once per batch: optional linear warm-up from 0, then constant,
linear decay (with warm-up: the triangular one-cycle) or cosine decay to `final_lr` x lr."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from ..config import TrainConfig


def lr_factor(step: int, total_steps: int, warmup_steps: int, kind: str, final: float) -> float:
    """The multiple of the peak lr used for optimizer step `step` (counted from 0)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if kind == "linear":
        return final + (1 - final) * (1 - progress)
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))  # cosine


def total_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Optimizer steps over the run: `steps` when set (a time budget sets it), else whole epochs."""
    return cfg.steps or cfg.epochs * steps_per_epoch


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int, step: int = 0
) -> LambdaLR:
    """One factor per parameter group; a third group (conv1 with a frozen start) gets 0 until
    `whiten_freeze_epochs` have passed, then the same factor as the rest. `step`: the optimizer steps
    taken already (a schedule laid anew in the middle of a run sets the lr of the next one)."""
    total = total_steps(cfg, steps_per_epoch)
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    frozen_until = round(cfg.whiten_freeze_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        return lr_factor(step, total, warmup, cfg.schedule, cfg.final_lr)

    def held(step: int) -> float:
        return 0.0 if step < frozen_until else factor(step)

    # a later start reads the peak lr from the optimizer's initial_lr, which the first schedule set
    return LambdaLR(optimizer, [factor, factor, held][: len(optimizer.param_groups)], last_epoch=step - 1)
