"""Training: the lesson's loop on device-resident batches, printing the lesson's per-epoch line.

    alexnet-cifar train                          # the lesson's recipe, 20 epochs
    alexnet-cifar train --epochs 1 --data-dir DIR
    alexnet-cifar train --resume runs/RUN        # continue an interrupted run, bit for bit

A run stops cleanly on SIGINT/SIGTERM (checkpoint, then exit 130/143) and on a non-finite loss
(the last good checkpoint is kept). Resuming restores every piece of state, so the final weights
equal an uninterrupted run's.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm

from ..artifacts.checkpoint import save_checkpoint, save_weights
from ..artifacts.run_dir import RunDir
from ..config import TrainConfig
from ..data.cifar10 import CIFAR10, data_fingerprint
from ..data.loader import Augment, DeviceLoader
from ..errors import Interrupted, NonFiniteLoss, UsageError, UserError
from ..inference.evaluate import evaluate
from ..model import AlexNet
from ..progress import POSTFIX_EVERY, progress_bar
from . import distributed
from .distributed import DistInfo
from .ema import EMA
from .metrics import EpochRecord, Meter
from .schedule import build_scheduler
from .signals import EXIT_CODES, StopOnSignal

log = logging.getLogger("alexnet_cifar")
STOP_CHECK_EVERY = 10  # batches between the ranks' agreement on a signal, in distributed runs
NAN_CHECK_EVERY = 50  # batches between reads of the on-device non-finite flag (a host sync on GPUs)


def select_device(name: str) -> torch.device:
    """auto picks cuda, then mps, then cpu; asking for one that is absent is an error."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        return torch.device(next(d for d, ok in available.items() if ok))
    if not available.get(name, False):
        have = ", ".join(d for d, ok in available.items() if ok)
        raise UsageError(f"device {name!r} is not available on this machine; use --device auto or one of: {have}")
    return torch.device(name)


def set_deterministic(enabled: bool) -> None:
    """Deterministic kernels where the backend has them (CPU runs repeat bit for bit either way)."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(enabled)


def build_model(cfg: TrainConfig, device: torch.device) -> nn.Module:
    torch.manual_seed(cfg.seed)  # the same initial weights on every run of a seed
    model = AlexNet().to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def runner(model: nn.Module, cfg: TrainConfig) -> nn.Module:
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

    def final_model(self) -> nn.Module:
        return self.ema.model if self.ema is not None else self.model

    def state_dict(self) -> dict[str, Any]:
        ema = self.ema.state_dict() if self.ema else None
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "ema": ema}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])


def build_trainer(cfg: TrainConfig, device: torch.device, steps_per_epoch: int, info: DistInfo = DistInfo()) -> Trainer:
    model = build_model(cfg, device)
    optimizer = build_optimizer(cfg, model)
    return Trainer(
        model=model, step_model=runner(distributed.wrap(model, info, device), cfg), optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg, steps_per_epoch),
        criterion=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
        ema=EMA(model, cfg.ema) if cfg.ema > 0 else None, amp=cfg.amp,
    )  # fmt: skip


def make_loaders(
    cfg: TrainConfig, data: CIFAR10, device: torch.device, info: DistInfo = DistInfo()
) -> tuple[DeviceLoader, DeviceLoader]:
    shard = {"rank": info.rank, "world_size": info.world_size}
    train = DeviceLoader(
        data.train.images, data.train.labels, cfg.batch_size, shuffle=True,
        augment=Augment(cfg.crop_padding, cfg.flip), seed=cfg.seed, device=device,
        channels_last=cfg.channels_last, drop_last=info.enabled, **shard,  # ranks must step together
    )  # fmt: skip
    test = DeviceLoader(
        data.test.images, data.test.labels, cfg.test_batch_size, device=device, channels_last=cfg.channels_last,
        **shard,
    )  # fmt: skip
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
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
             "python": random.getstate()}  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train_one_epoch(
    trainer: Trainer,
    loader: DeviceLoader,
    *,
    max_batches: int | None = None,
    start: int = 0,
    meter: Meter | None = None,
    stop: Callable[[], bool] | None = None,
    bar: tqdm | None = None,
) -> Meter:
    """Train over the loader's epoch from batch `start`; returns the meter (its `.batches` says how
    far it got: fewer than the epoch's if `stop` was requested or a loss was not finite)."""
    model, optimizer = trainer.step_model, trainer.optimizer
    model.train()
    meter = meter or Meter(loader.device)
    end = len(loader) if max_batches is None else min(len(loader), start + max_batches)
    for i, (images, labels) in enumerate(loader.batches(start), start):
        with torch.autocast(loader.device.type, dtype=torch.bfloat16, enabled=trainer.amp):
            logits = model(images)
            loss = trainer.criterion(logits, labels)
        meter.update(loss, logits, labels)
        if (i + 1) % NAN_CHECK_EVERY == 0 and not meter.finite():
            return meter  # the bad batch's update is not applied
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        trainer.scheduler.step()
        if trainer.ema is not None:
            trainer.ema.update(trainer.model)
        if bar is not None and not bar.disable:
            bar.update(len(labels))
            if (i + 1) % POSTFIX_EVERY == 0:
                bar.set_postfix(loss=f"{meter.running_loss():.3f}", refresh=False)
        if i + 1 == end or (stop is not None and stop()):
            break
    return meter


def fit(
    cfg: TrainConfig, data: CIFAR10, run: RunDir, resume: dict[str, Any] | None = None, show_progress: bool = True
) -> list[EpochRecord]:
    """Train `cfg` on `data` (from a checkpoint if `resume`), logging the lesson's line per epoch.
    Under torchrun every rank calls this; only rank 0 writes into `run`."""
    if resume is not None:
        check_same_data(resume, data, run)  # before anything is written
    info = distributed.from_environment()
    device = distributed.init(info, select_device(cfg.device))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_deterministic(cfg.deterministic)
    handler = None
    if info.is_main:
        if resume is None:  # first, so that the folder is recognisably a run of this tool
            record_start(run, cfg, data, device, info)
        handler = run.attach_log()
    clean = False  # whether every rank leaves at the same point (a finish, or a stop they agreed on)
    try:
        with StopOnSignal() as stop:
            history = _fit(cfg, data, run, device, resume, stop, show_progress and info.is_main, info)
        clean = True
        return history
    except Interrupted:
        clean = True
        raise
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        run.close()
        distributed.shutdown(clean)


def check_same_data(resume: dict[str, Any], data: CIFAR10, run: RunDir) -> None:
    """A resumed run must see the data it started on, or it is no longer the run it continues."""
    saved = resume.get("data_fingerprint")
    if saved is None:  # written before fingerprints were recorded
        log.info(f"{run.last} records no data fingerprint: cannot check that the data is the same")
        return
    if saved != data_fingerprint(data):
        where = resume.get("data_folder") or "synthetic data"
        raise UserError(
            f"cannot resume {run.path}: it was trained on other data ({where}) than {data.folder or 'synthetic data'}; "
            f"resume with its own data (--data-dir), or start a new run with --run-dir"
        )


def _fit(
    cfg: TrainConfig, data: CIFAR10, run: RunDir, device: torch.device, resume: dict[str, Any] | None,
    stop: StopOnSignal, show_progress: bool, info: DistInfo,
) -> list[EpochRecord]:  # fmt: skip
    train_loader, test_loader = make_loaders(cfg, data, device, info)
    trainer = build_trainer(cfg, device, len(train_loader), info)
    state = Progress()
    if resume is not None:
        state = restore(trainer, resume, run)
        if not info.is_main:  # an interrupted epoch's partial sums were summed over ranks into rank 0's
            state.meter = None
        if state.batch >= len(train_loader):
            raise UserError(f"{run.last} is damaged: it stopped at batch {state.batch} of an epoch of "
                            f"{len(train_loader)} batches; restore it, or start a new run with --run-dir")  # fmt: skip
        if info.is_main:  # after the resume's checks, so a refused resume leaves config.json as it was
            run.truncate_metrics(state.epoch)
            record_start(run, cfg, data, device, info)
        log.info(f"resuming {run.path} at epoch {state.epoch}, batch {state.batch}")
    log.info(data.summary())
    where = f"{info.world_size} processes on {device.type}" if info.enabled else str(device)
    log.info(f"training recipe {cfg.recipe!r} on {where} for {cfg.epochs} epochs; run directory {run.path}")
    if info.enabled:
        log.info(f"global batch {train_loader.global_batch} = {cfg.batch_size} per rank x {info.world_size} ranks")

    batches_seen = itertools.count(1)

    def should_stop() -> bool:
        if not info.enabled:
            return stop.requested
        # ranks agree through an all-reduce, a host sync on GPUs: so only every STOP_CHECK_EVERY batches
        return next(batches_seen) % STOP_CHECK_EVERY == 0 and distributed.any_rank(stop.requested, device)

    data_folder = folder_name(data)  # where --resume reads
    fingerprint = data_fingerprint(data)

    def checkpoint(path, meter: Meter | None = None) -> None:
        if not info.is_main:
            return
        state.meter = meter.state_dict() if meter is not None else None
        state.rng = rng_state()
        save_checkpoint(path, {**trainer.state_dict(), "config": cfg.to_dict(), "progress": vars(state),
                               "data_folder": data_folder, "data_fingerprint": fingerprint})  # fmt: skip
        run.started()  # the run that --overwrite moved aside may go now

    history = []
    while state.epoch < cfg.epochs:
        start = time.perf_counter() - state.seconds
        train_loader.set_epoch(state.epoch)
        meter = Meter.from_state(state.meter, device)
        meter.batches = state.batch  # this rank's place in the epoch (a saved count is summed over ranks)
        done_before = meter.batches
        with progress_bar(len(data.train), f"epoch {state.epoch}", show_progress) as bar:
            bar.update(meter.samples)
            train = train_one_epoch(trainer, train_loader, start=state.batch, meter=meter, stop=should_stop, bar=bar)
        state.step += train.batches - done_before
        if not train.finite():
            raise NonFiniteLoss(nonfinite_message(state.epoch, train.batches, trainer.optimizer, run))
        if not weights_finite(trainer):
            raise NonFiniteLoss(diverged_message(state.epoch, "the weights", trainer.optimizer, run))
        if train.batches < len(train_loader):  # stopped by a signal after this batch
            state.batch, state.seconds = train.batches, time.perf_counter() - start
            checkpoint(run.last, train.all_reduce())
            signum = stop.signum or signal.SIGTERM  # a rank that got no signal stops with the others
            name = signal.Signals(signum).name
            raise Interrupted(
                f"stopped by {name} at epoch {state.epoch}, batch {train.batches}; checkpoint {run.last} written",
                EXIT_CODES[signum], resume_dir=run.path,
            )  # fmt: skip
        record = finish_epoch(state.epoch, train, trainer, test_loader, cfg, start)
        if not math.isfinite(record.train_loss) or not math.isfinite(record.valid_loss):
            raise NonFiniteLoss(diverged_message(state.epoch, "the loss", trainer.optimizer, run))
        log.info(record.lesson_line())
        history.append(record)
        state.epoch, state.batch, state.seconds = state.epoch + 1, 0, 0.0
        if record.valid_acc > state.best_acc:
            state.best_acc = record.valid_acc
            checkpoint(run.best)
        checkpoint(run.last)  # before the metrics row, so a resumed run never repeats a row
        if info.is_main:
            run.append_metrics(record)
    if info.enabled:
        agree = distributed.weights_agree(trainer.model, device)
        log.info(f"all {info.world_size} ranks hold identical weights: {'yes' if agree else 'NO'}")
    if info.is_main:
        save_weights(run.weights, trainer.final_model())
    if history:
        log.info(summarise(history))
    log.info(f"final weights: {run.weights}")
    return history


def folder_name(data: CIFAR10) -> str | None:
    return str(data.folder.resolve()) if data.folder is not None else None


def record_start(run: RunDir, cfg: TrainConfig, data: CIFAR10, device: torch.device, info: DistInfo) -> None:
    run.write_config(cfg.to_dict(), device, world_size=info.world_size, data_folder=folder_name(data))


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


def finish_epoch(
    epoch: int, train: Meter, trainer: Trainer, test_loader: DeviceLoader, cfg: TrainConfig, start: float
) -> EpochRecord:
    train_loss, train_acc = train.all_reduce().result(cfg.lesson_metrics)  # the epoch's one host sync
    train_seconds = time.perf_counter() - start
    valid = evaluate(trainer.eval_model(), test_loader, trainer.criterion, amp=cfg.amp, tta=cfg.tta)
    valid_loss, valid_acc = valid.all_reduce().result(cfg.lesson_metrics)
    return EpochRecord(
        epoch=epoch, train_loss=train_loss, train_acc=train_acc, valid_loss=valid_loss, valid_acc=valid_acc,
        lr=trainer.optimizer.param_groups[0]["lr"], seconds=time.perf_counter() - start,
        images_per_s=train.samples / train_seconds,
    )  # fmt: skip


def nonfinite_message(epoch: int, batches: int, optimizer: torch.optim.Optimizer, run: RunDir) -> str:
    lr = optimizer.param_groups[0]["lr"]
    return (
        f"loss became NaN or infinite at epoch {epoch}, within batches {max(0, batches - NAN_CHECK_EVERY)}-"
        f"{batches - 1} (lr {lr:g}): {DIVERGED_HINT}; the last good checkpoint {run.last} is kept"
    )


def diverged_message(epoch: int, what: str, optimizer: torch.optim.Optimizer, run: RunDir) -> str:
    lr = optimizer.param_groups[0]["lr"]
    kept = f"the last good checkpoint {run.last} is kept"
    return f"{what} became NaN or infinite in epoch {epoch} (lr {lr:g}): {DIVERGED_HINT}; {kept}"


DIVERGED_HINT = "the learning rate is likely too high for this batch size or recipe; try a smaller --lr"


def summarise(history: list[EpochRecord]) -> str:
    """Peak and last accuracy, total and per-epoch seconds: the numbers a results table needs."""
    peak = max(history, key=lambda r: r.valid_acc)
    seconds = sum(r.seconds for r in history)
    return (
        f"{len(history)} epochs in {seconds:.1f} s ({seconds / len(history):.2f} s/epoch); valid acc peak "
        f"{peak.valid_acc:.4f} at epoch {peak.epoch}, last {history[-1].valid_acc:.4f}"
    )
