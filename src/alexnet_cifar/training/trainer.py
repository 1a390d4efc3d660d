"""What one optimizer step touches (model, optimizer, schedule, EMA, loss) and what a checkpoint must
restore of it: built from a config, saved and restored whole, RNG states included."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from ..artifacts.run_dir import RunDir
from ..config import TrainConfig
from ..data.cifar10 import CIFAR10
from ..data.loader import Augment, DeviceLoader, Sampling, Shard
from ..device import use_amp
from ..errors import UserError
from ..model import AlexNet
from . import distributed
from .ema import EMA
from .ranks import DistInfo
from .schedule import build_scheduler


def build_model(cfg: TrainConfig, device: torch.device) -> nn.Module:
    torch.manual_seed(cfg.seed)  # the same initial weights on every run of a seed
    model = AlexNet().to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def compiled(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """What the loop calls: the model itself, or its torch.compile'd wrapper (weights are shared,
    and checkpoints always save the plain module, so no `_orig_mod.` prefixes appear)."""
    return torch.compile(model) if cfg.compile else model


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD; weight decay applies to weight matrices and kernels only, never to biases."""
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=peak_lr(cfg), momentum=cfg.momentum, nesterov=cfg.nesterov)


def peak_lr(cfg: TrainConfig) -> float:
    """The config's lr, scaled linearly from batch 64 to the batch size when `scale_lr` is set."""
    return cfg.lr * cfg.batch_size / 64 if cfg.scale_lr else cfg.lr


@dataclass
class Trainer:
    """Everything one optimizer step touches, and what a checkpoint must restore of it."""

    model: nn.Module  # the plain module: its state_dict is what gets saved
    step_model: nn.Module  # what the loop calls: `model`, or its torch.compile'd wrapper
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR
    criterion: nn.Module
    ema: EMA | None
    amp: bool

    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and kept: the moving average when there is one (and never
        the DDP wrapper, whose forward is for training)."""
        if self.ema is not None:
            return self.ema.model
        return self.model if isinstance(self.step_model, nn.parallel.DistributedDataParallel) else self.step_model

    def step(self, loss: torch.Tensor) -> None:
        """One optimizer step on `loss`, then the schedule and the moving average follow."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)

    def final_model(self) -> nn.Module:
        return self.ema.model if self.ema is not None else self.model

    def state_dict(self) -> dict[str, Any]:
        ema = self.ema.state_dict() if self.ema else None
        optimizer, scheduler = self.optimizer.state_dict(), self.scheduler.state_dict()
        return {"model": self.model.state_dict(), "optimizer": optimizer, "scheduler": scheduler, "ema": ema}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Every part this trainer has; a checkpoint without one of them does not fit (restore says so)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])


def build_trainer(cfg: TrainConfig, device: torch.device, steps_per_epoch: int, info: DistInfo = DistInfo()) -> Trainer:
    model = build_model(cfg, device)
    optimizer = build_optimizer(cfg, model)
    return Trainer(
        model=model,
        step_model=compiled(distributed.wrap(model, info, device), cfg),
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg, steps_per_epoch),
        criterion=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
        ema=EMA(model, cfg.ema) if cfg.ema > 0 else None,
        amp=use_amp(cfg.amp, device),
    )


def make_loaders(
    cfg: TrainConfig, data: CIFAR10, device: torch.device, info: DistInfo = DistInfo()
) -> tuple[DeviceLoader, DeviceLoader]:
    where = {"device": device, "channels_last": cfg.channels_last, "shard": Shard(info.rank, info.world_size)}
    augment = Augment(cfg.crop_padding, cfg.flip)
    # under DDP the last partial batch is dropped: the ranks must step together
    sampling = Sampling(shuffle=True, seed=cfg.seed, augment=augment, drop_last=info.enabled)
    train = DeviceLoader(data.train.images, data.train.labels, cfg.batch_size, sampling=sampling, **where)
    test = DeviceLoader(data.test.images, data.test.labels, cfg.test_batch_size, **where)
    return train, test


@dataclass
class Progress:
    """Where a run stands: the part of a checkpoint that is not model or optimizer."""

    epoch: int = 0  # the epoch in progress, counted from 0
    batch: int = 0  # batches of that epoch already done
    step: int = 0  # optimizer steps over the whole run
    seconds: float = 0.0  # wall time already spent on this epoch (before an interruption)
    best_acc: float = -1.0
    meter: dict[str, Any] | None = None  # the epoch's partial sums
    rng: dict[str, Any] = field(default_factory=dict)


def rng_state() -> dict[str, Any]:
    """The host's global generators, for code that draws from them. Not the GPUs': training never
    draws there (the loader's generator is on the CPU), and their count changes between machines."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = [kind, keys.tolist(), pos, has_gauss, cached]
    return {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(tuple(state["numpy"]))  # numpy takes the key list as it is
    random.setstate(tuple(state["python"]))  # torch.load gives tuples; a list inside is a damaged file


def restore(trainer: Trainer, resume: dict[str, Any], run: RunDir) -> Progress:
    """Load a checked checkpoint into the trainer and the RNGs; a mismatch is a one-line error."""
    try:
        trainer.load_state_dict(resume)
        state = Progress(**resume["progress"])
        set_rng_state(state.rng)
    except (KeyError, IndexError, AttributeError, TypeError, ValueError, OverflowError, RuntimeError) as exc:
        raise UserError(
            f"{run.last} does not fit this run ({type(exc).__name__} while restoring it); "
            "restore the file, or start a new run with --run-dir"
        ) from None
    return state


def weights_finite(trainer: Trainer) -> bool:
    """Every weight (and its moving average) is a finite number: checked before any checkpoint."""
    models = [trainer.model] + ([trainer.ema.model] if trainer.ema is not None else [])
    flags = [torch.isfinite(p).all() for m in models for p in m.parameters()]
    return bool(torch.stack(flags).all())
