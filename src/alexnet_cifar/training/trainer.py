"""What one optimizer step touches (model, optimizer, schedule, EMA, loss) and what a checkpoint must
restore of it: built from a config, saved and restored whole, RNG states included."""

from __future__ import annotations

import random
import warnings
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
from ..device import DevicePolicy, choose_policy
from ..errors import UserError
from ..model import AlexNet
from . import distributed
from .ema import EMA, Lookahead
from .initialise import init_dirac, init_whitening
from .ranks import DistInfo
from .schedule import build_scheduler, total_steps


def build_model(cfg: TrainConfig, device: torch.device, whitening: torch.Tensor | None = None) -> nn.Module:
    """The lesson's network with the seed's weights; with `whiten`, conv1 takes the `whitening`
    filters (initialise.conv1_whitening of the training images)."""
    torch.manual_seed(cfg.seed)  # the same initial weights on every run of a seed
    model = AlexNet()
    if cfg.whiten:
        if whitening is None:
            raise ValueError("whiten = true needs the whitening filters of the training images")
        init_whitening(model.conv1[0], whitening)
    if cfg.dirac:
        init_dirac(model.conv2[0])
    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def compiled(model: nn.Module, enabled: bool) -> nn.Module:
    """What the loop calls: the model itself, or its torch.compile'd wrapper (weights are shared,
    and checkpoints always save the plain module, so no `_orig_mod.` prefixes appear)."""
    return torch.compile(model) if enabled else model


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD; weight decay applies to weight matrices and kernels only, never to biases. With a frozen
    start for conv1, its kernels are a third group, whose schedule holds them still at first."""
    frozen = [model.conv1[0].weight] if cfg.whiten_freeze_epochs else []
    decay = [p for p in model.parameters() if p.dim() > 1 and all(p is not f for f in frozen)]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if frozen:
        groups.append({"params": frozen, "weight_decay": cfg.weight_decay})
    return torch.optim.SGD(groups, lr=peak_lr(cfg), momentum=cfg.momentum, nesterov=cfg.nesterov)


def peak_lr(cfg: TrainConfig) -> float:
    """The config's lr, scaled linearly from batch 64 to the batch size when `scale_lr` is set."""
    return cfg.lr * cfg.batch_size / 64 if cfg.scale_lr else cfg.lr


@dataclass
class Trainer:
    """Everything one optimizer step touches, and what a checkpoint must restore of it."""

    model: nn.Module  # the plain module: its state_dict is what gets saved
    step_model: nn.Module  # what the loop calls: `model` (under DDP, its wrapper), maybe compiled
    eval_forward: nn.Module  # what evaluation calls: `model` (never DDP's wrapper), maybe compiled
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR
    criterion: nn.Module
    ema: EMA | None
    lookahead: Lookahead | None = None
    autocast: torch.dtype | None = None  # the forward's dtype under autocast; None = float32
    scaler: torch.amp.GradScaler | None = None  # float16 only: scales the loss so gradients do not underflow

    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and kept: the moving average when there is one (and never
        the DDP wrapper, whose forward is for training)."""
        return self.ema.model if self.ema is not None else self.eval_forward

    def step(self, loss: torch.Tensor) -> None:
        """One optimizer step on `loss`, then the schedule and the moving average follow. Under float16
        the scaler skips a step whose scaled gradients overflowed (and lowers its scale): the schedule
        still advances, so a step is a batch and resume stays exact."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.scheduler.step()
        if self.lookahead is not None:  # before the average: it averages the weights training goes on from
            self.lookahead.after_step(self.model, self.scheduler.last_epoch)
        if self.ema is not None:
            self.ema.update(self.model)

    def reschedule(self, cfg: TrainConfig, steps_per_epoch: int) -> None:
        """Lay `cfg`'s schedule (and the lookahead's decay) over the run from the step it has reached:
        a time budget's steps, fixed again from the run's own speed."""
        self.scheduler = build_scheduler(self.optimizer, cfg, steps_per_epoch, step=self.scheduler.last_epoch)
        if self.lookahead is not None:
            self.lookahead.total = total_steps(cfg, steps_per_epoch)

    def final_model(self) -> nn.Module:
        return self.ema.model if self.ema is not None else self.model

    def state_dict(self) -> dict[str, Any]:
        ema = self.ema.state_dict() if self.ema else None
        optimizer, scheduler = self.optimizer.state_dict(), self.scheduler.state_dict()
        scaler = self.scaler.state_dict() if self.scaler else None
        state = {"model": self.model.state_dict(), "optimizer": optimizer, "scheduler": scheduler, "ema": ema}
        lookahead = self.lookahead.state_dict() if self.lookahead else None
        return {**state, "scaler": scaler, "lookahead": lookahead}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Every part this trainer has; a checkpoint without one of them does not fit (restore says so).
        The scaler is the exception: a resume may switch amp (another device), and a scaler without a
        saved state starts as a new run's does."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        if self.lookahead is not None:
            self.lookahead.load_state_dict(state["lookahead"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def build_trainer(
    cfg: TrainConfig,
    device: torch.device,
    steps_per_epoch: int,
    info: DistInfo = DistInfo(),
    policy: DevicePolicy | None = None,
    whitening: torch.Tensor | None = None,
) -> Trainer:
    """The trainer for `cfg` on `device`; `policy` defaults to the device's (device.choose_policy);
    `whitening`: conv1's filters when `cfg.whiten` (build_model)."""
    policy = policy or choose_policy(device, cfg.amp, cfg.compile, cfg.deterministic)
    model = build_model(cfg, device, whitening)
    optimizer = build_optimizer(cfg, model)
    step_model = compiled(distributed.wrap(model, info, device), policy.compile)
    return Trainer(
        model=model,
        step_model=step_model,
        eval_forward=compiled(model, policy.compile) if info.enabled else step_model,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg, steps_per_epoch),
        criterion=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
        ema=EMA(model, cfg.ema) if cfg.ema > 0 else None,
        lookahead=lookahead(cfg, model, steps_per_epoch),
        autocast=policy.autocast_dtype,
        scaler=grad_scaler(device) if policy.grad_scaler else None,
    )


def lookahead(cfg: TrainConfig, model: nn.Module, steps_per_epoch: int) -> Lookahead | None:
    if not cfg.lookahead_every:
        return None
    return Lookahead(model, cfg.lookahead_every, cfg.lookahead_decay, total_steps(cfg, steps_per_epoch))


def grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    # A skipped first step is the scaler finding its scale, not a misordered schedule: the warning
    # that LambdaLR gives then would only alarm.
    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
    return torch.amp.GradScaler(device.type)


def make_loaders(
    cfg: TrainConfig, data: CIFAR10, device: torch.device, info: DistInfo = DistInfo(), started_on: int | None = None
) -> tuple[DeviceLoader, DeviceLoader]:
    """The training and test loaders of this process. `started_on`: how many processes the run
    started on (default: as many as now). Its global batch (batch_size per process x those processes)
    and whether it drops a short last batch stay as they were, so a resume elsewhere (more or fewer
    GPUs, or the CPU) steps through the same batches under the same schedule."""
    started_on = started_on or info.world_size
    batch_size = rank_batch_size(cfg.batch_size * started_on, info.world_size, len(data.train), started_on)
    where = {"device": device, "channels_last": cfg.channels_last, "shard": Shard(info.rank, info.world_size)}
    augment = Augment(cfg.crop_padding, cfg.flip, cfg.alternate_flip)
    # distributed runs drop the last partial batch: the ranks must step together
    sampling = Sampling(shuffle=True, seed=cfg.seed, augment=augment, drop_last=started_on > 1)
    train = DeviceLoader(data.train.images, data.train.labels, batch_size, sampling=sampling, **where)
    test = DeviceLoader(data.test.images, data.test.labels, cfg.test_batch_size, **where)
    return train, test


def rank_batch_size(global_batch: int, world_size: int, n_train: int, started_on: int) -> int:
    """Each process's share of a global batch; a share that is not whole is a one-line error."""
    if global_batch % world_size:
        raise UserError(
            f"this run's global batch of {global_batch} images ({started_on} processes when it started) cannot be "
            f"shared by {world_size} processes; resume it on a number of processes that divides {global_batch}"
        )
    if started_on == 1 < world_size and n_train % global_batch:
        raise UserError(
            f"this run started in one process, so its epochs end in a short batch of {n_train % global_batch} "
            f"images, which {world_size} processes cannot share; resume it in one process"
        )
    return global_batch // world_size


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
    world_size: int | None = None  # processes the run started on: they set its global batch (None: older files)


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
