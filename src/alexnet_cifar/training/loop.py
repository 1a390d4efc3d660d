"""Training: the lesson's loop on device-resident batches, printing the lesson's per-epoch line.

    alexnet-cifar train                          # the lesson's recipe, 20 epochs
    alexnet-cifar train --epochs 1 --data-dir DIR
    alexnet-cifar train --resume runs/RUN        # continue an interrupted run, bit for bit

An epoch ends in one of three ways (`Outcome`): it finishes, a signal stops it (checkpoint, then
exit 130/143), or the loss stops being finite (the last good checkpoint is kept). Resuming
restores every piece of state, so the final weights equal an uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from ..artifacts.checkpoint import save_checkpoint, save_weights
from ..artifacts.run_dir import RunDir
from ..config import TrainConfig
from ..data.cifar10 import CIFAR10, data_fingerprint
from ..data.loader import DeviceLoader
from ..device import select_device, set_deterministic, use_amp
from ..errors import Interrupted, NonFiniteLoss, UserError
from ..inference.evaluate import evaluate
from ..progress import POSTFIX_EVERY, progress_bar
from . import distributed
from .metrics import EpochRecord, Meter
from .ranks import DistInfo, from_environment
from .signals import EXIT_CODES, StopOnSignal
from .trainer import Progress, Trainer, build_trainer, make_loaders, restore, rng_state, weights_finite

log = logging.getLogger("alexnet_cifar")
STOP_CHECK_EVERY = 10  # batches between the ranks' agreement on a signal, in distributed runs
NAN_CHECK_EVERY = 50  # batches between reads of the on-device non-finite flag (a host sync on GPUs)
DIVERGED_HINT = "the learning rate is likely too high for this batch size or recipe; try a smaller --lr"


class Outcome(enum.Enum):
    FINISHED = "finished"  # every batch of the epoch (or of max_batches) was trained
    STOPPED = "stopped"  # `stop` asked for it after a batch
    DIVERGED = "diverged"  # a loss was NaN or infinite; that batch's update was not applied


@dataclass
class EpochResult:
    outcome: Outcome
    meter: Meter  # the epoch's sums so far; `.batches` says how far it got


def train_one_epoch(
    trainer: Trainer,
    loader: DeviceLoader,
    *,
    max_batches: int | None = None,
    start: int = 0,
    meter: Meter | None = None,
    stop: Callable[[], bool] | None = None,
    bar: tqdm | None = None,
) -> EpochResult:
    """Train over the loader's epoch from batch `start`, and say how the epoch ended."""
    model = trainer.step_model
    model.train()
    meter = meter or Meter(loader.device)
    end = len(loader) if max_batches is None else min(len(loader), start + max_batches)
    for i, (images, labels) in enumerate(loader.batches(start), start):
        with torch.autocast(loader.device.type, dtype=torch.bfloat16, enabled=trainer.amp):
            logits = model(images)
            loss = trainer.criterion(logits, labels)
        meter.update(loss, logits, labels)
        if (i + 1) % NAN_CHECK_EVERY == 0 and not meter.finite():
            return EpochResult(Outcome.DIVERGED, meter)
        trainer.step(loss)
        show(bar, meter, i, len(labels))
        if i + 1 == end:
            break
        if stop is not None and stop():
            return EpochResult(Outcome.STOPPED, meter)
    # the last batches since the periodic check: the caller checks the weights before any checkpoint
    return EpochResult(Outcome.FINISHED if meter.finite() else Outcome.DIVERGED, meter)


def show(bar: tqdm | None, meter: Meter, batch: int, images: int) -> None:
    """Advance the progress bar; the running loss costs a host sync, so only every POSTFIX_EVERY batches."""
    if bar is None or bar.disable:
        return
    bar.update(images)
    if (batch + 1) % POSTFIX_EVERY == 0:
        bar.set_postfix(loss=f"{meter.running_loss():.3f}", refresh=False)


def fit(
    cfg: TrainConfig,
    data: CIFAR10,
    run: RunDir,
    resume: dict[str, Any] | None = None,
    show_progress: bool = True,
    stop: StopOnSignal | None = None,
) -> list[EpochRecord]:
    """Train `cfg` on `data` (from a checkpoint if `resume`), logging the lesson's line per epoch.
    Under torchrun every rank calls this; only rank 0 writes into `run`. `stop`: signal handlers the
    caller installed earlier (so a signal during start-up is not lost); else fit installs its own."""
    if resume is not None:
        check_same_data(resume, data, run)  # before anything is written
    info = from_environment()
    device = distributed.init(info, select_device(cfg.device))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_deterministic(cfg.deterministic)
    if info.is_main and resume is None:  # first, so that the folder is recognisably a run of this tool
        record_start(run, cfg, data, device, info)
    handler = run.attach_log() if info.is_main else None
    clean = False  # whether every rank leaves at the same point (a finish, or a stop they agreed on)
    try:
        with contextlib.nullcontext(stop) if stop is not None else StopOnSignal() as handlers:
            runtime = Runtime(device, info, handlers, show_progress and info.is_main)
            history = Session(cfg, data, run, runtime).train(resume)
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


@dataclass(frozen=True)
class Runtime:
    """Where this process trains: its device, its rank, its signal handler, whether it draws bars."""

    device: torch.device
    info: DistInfo
    stop: StopOnSignal
    show_progress: bool


class Session:
    """One process's part of a run: the loaders, the trainer and where the run stands."""

    def __init__(self, cfg: TrainConfig, data: CIFAR10, run: RunDir, runtime: Runtime) -> None:
        self.cfg, self.data, self.run = cfg, data, run
        self.device, self.info, self.stop = runtime.device, runtime.info, runtime.stop
        self.show_progress = runtime.show_progress
        self.train_loader, self.test_loader = make_loaders(cfg, data, self.device, self.info)
        self.trainer = build_trainer(cfg, self.device, len(self.train_loader), self.info)
        self.state = Progress()
        self.batches_seen = itertools.count(1)
        self.fingerprint = data_fingerprint(data)

    def train(self, resume: dict[str, Any] | None) -> list[EpochRecord]:
        """Every remaining epoch, top to bottom; returns the records of the epochs trained here."""
        if resume is not None:
            self.resume(resume)
        self.announce()
        if self.stop.requested:  # a signal during start-up: leave before anything is trained or saved
            name = signal.Signals(self.stop.signum).name
            raise Interrupted(f"stopped by {name} before training started; nothing saved", EXIT_CODES[self.stop.signum])
        history = []
        while self.state.epoch < self.cfg.epochs:
            start = time.perf_counter() - self.state.seconds
            result = self.train_epoch()
            if result.outcome is Outcome.STOPPED:
                self.stop_here(result.meter, start)
            record = self.end_epoch(result, start)
            log.info(record.lesson_line())
            history.append(record)
        self.finish(history)
        return history

    def resume(self, resume: dict[str, Any]) -> None:
        self.state = restore(self.trainer, resume, self.run)
        if self.state.batch >= len(self.train_loader):
            raise UserError(
                f"{self.run.last} is damaged: it stopped at batch {self.state.batch} of an epoch of "
                f"{len(self.train_loader)} batches; restore it, or start a new run with --run-dir"
            )
        if not self.info.is_main:  # an interrupted epoch's partial sums were summed over ranks into rank 0's
            self.state.meter = None
        if self.info.is_main:  # after the resume's checks, so a refused resume leaves the run as it was
            self.run.truncate_metrics(self.state.epoch)
            record_start(self.run, self.cfg, self.data, self.device, self.info)
        log.info(f"resuming {self.run.path} at epoch {self.state.epoch}, batch {self.state.batch}")

    def announce(self) -> None:
        cfg, info = self.cfg, self.info
        log.info(self.data.summary())
        where = f"{info.world_size} processes on {self.device.type}" if info.enabled else str(self.device)
        log.info(f"training recipe {cfg.recipe!r} on {where} for {cfg.epochs} epochs; run directory {self.run.path}")
        if info.enabled:
            batch = self.train_loader.global_batch
            log.info(f"global batch {batch} = {cfg.batch_size} per rank x {info.world_size} ranks")

    def train_epoch(self) -> EpochResult:
        state = self.state
        self.train_loader.set_epoch(state.epoch)
        meter = Meter.from_state(state.meter, self.device)
        meter.batches = state.batch  # this rank's place in the epoch (a saved count is summed over ranks)
        with progress_bar(len(self.data.train), f"epoch {state.epoch}", self.show_progress) as bar:
            bar.update(meter.samples)
            result = train_one_epoch(
                self.trainer, self.train_loader, start=state.batch, meter=meter, stop=self.should_stop, bar=bar
            )
        state.step += result.meter.batches - state.batch
        if result.outcome is Outcome.DIVERGED:
            raise NonFiniteLoss(self.diverged(f"loss became NaN or infinite {self.batch_span(result.meter)}"))
        if not weights_finite(self.trainer):
            raise NonFiniteLoss(self.diverged(f"the weights became NaN or infinite in epoch {state.epoch}"))
        return result

    def should_stop(self) -> bool:
        if not self.info.enabled:
            return self.stop.requested
        # ranks agree through an all-reduce, a host sync on GPUs: so only every STOP_CHECK_EVERY batches
        due = next(self.batches_seen) % STOP_CHECK_EVERY == 0
        return due and distributed.any_rank(self.stop.requested, self.device)

    def stop_here(self, meter: Meter, start: float) -> None:
        """A signal stopped the epoch after a batch: checkpoint where it stands, then leave."""
        self.state.batch, self.state.seconds = meter.batches, time.perf_counter() - start
        self.checkpoint(self.run.last, meter.all_reduce())
        signum = self.stop.signum or signal.SIGTERM  # a rank that got no signal stops with the others
        where = f"epoch {self.state.epoch}, batch {meter.batches}"
        message = f"stopped by {signal.Signals(signum).name} at {where}; checkpoint {self.run.last} written"
        raise Interrupted(message, EXIT_CODES[signum], resume_dir=self.run.path)

    def end_epoch(self, result: EpochResult, start: float) -> EpochRecord:
        """Evaluate, record the epoch's row, then checkpoint. The row comes first: a crash between the
        two leaves a row whose epoch the resume trains again, and the resume drops that row first; the
        other order would lose the row for good."""
        record = self.evaluate(result.meter, start)
        if not (math.isfinite(record.train_loss) and math.isfinite(record.valid_loss)):
            raise NonFiniteLoss(self.diverged(f"the loss became NaN or infinite in epoch {record.epoch}"))
        if self.info.is_main:
            self.run.append_metrics(record)
        state = self.state
        state.epoch, state.batch, state.seconds = state.epoch + 1, 0, 0.0
        if record.valid_acc > state.best_acc:
            state.best_acc = record.valid_acc
            self.checkpoint(self.run.best)
        self.checkpoint(self.run.last)
        return record

    def evaluate(self, train: Meter, start: float) -> EpochRecord:
        cfg, trainer = self.cfg, self.trainer
        train_loss, train_acc = train.all_reduce().result(cfg.lesson_metrics)  # the epoch's one host sync
        train_seconds = time.perf_counter() - start
        valid = evaluate(trainer.eval_model(), self.test_loader, trainer.criterion, amp=trainer.amp, tta=cfg.tta)
        valid_loss, valid_acc = valid.all_reduce().result(cfg.lesson_metrics)
        return EpochRecord(
            epoch=self.state.epoch,
            train_loss=train_loss,
            train_acc=train_acc,
            valid_loss=valid_loss,
            valid_acc=valid_acc,
            lr=trainer.optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - start,
            images_per_s=train.samples / train_seconds,
        )

    def checkpoint(self, path, meter: Meter | None = None) -> None:
        if not self.info.is_main:
            return
        state = self.state
        state.meter = meter.state_dict() if meter is not None else None
        state.rng = rng_state()
        data = {"data_folder": folder_name(self.data), "data_fingerprint": self.fingerprint}
        save_checkpoint(
            path, {**self.trainer.state_dict(), "config": self.cfg.to_dict(), "progress": vars(state), **data}
        )
        self.run.started()  # the run that --overwrite moved aside may go now

    def finish(self, history: list[EpochRecord]) -> None:
        if self.info.enabled:
            agree = distributed.weights_agree(self.trainer.model, self.device)
            log.info(f"all {self.info.world_size} ranks hold identical weights: {'yes' if agree else 'NO'}")
        if self.info.is_main:
            save_weights(self.run.weights, self.trainer.final_model())
        if history:
            log.info(summarise(history))
        log.info(f"final weights: {self.run.weights}")

    def batch_span(self, meter: Meter) -> str:
        last = meter.batches - 1
        return f"at epoch {self.state.epoch}, within batches {max(0, last + 1 - NAN_CHECK_EVERY)}-{last}"

    def diverged(self, what: str) -> str:
        lr = self.trainer.optimizer.param_groups[0]["lr"]
        return f"{what} (lr {lr:g}): {DIVERGED_HINT}; the last good checkpoint {self.run.last} is kept"


def check_same_data(resume: dict[str, Any], data: CIFAR10, run: RunDir) -> None:
    """A resumed run must see the data it started on, or it is no longer the run it continues."""
    saved = resume.get("data_fingerprint")
    if saved is None:  # written before fingerprints were recorded
        log.info(f"{run.last} records no data fingerprint: cannot check that the data is the same")
        return
    if saved != data_fingerprint(data):
        was, now = resume.get("data_folder") or "synthetic data", data.folder or "synthetic data"
        raise UserError(
            f"cannot resume {run.path}: it was trained on other data ({was}) than {now}; "
            "resume with its own data (--data-dir), or start a new run with --run-dir"
        )


def folder_name(data: CIFAR10) -> str | None:
    return str(data.folder.resolve()) if data.folder is not None else None


def record_start(run: RunDir, cfg: TrainConfig, data: CIFAR10, device: torch.device, info: DistInfo) -> None:
    """config.json: the config as asked, and how this machine ran it (amp = auto resolved here)."""
    amp = use_amp(cfg.amp, device)
    where = {"data_folder": folder_name(data), "synthetic": data.folder is None}
    facts = {"world_size": info.world_size, **where, "bf16_autocast": amp}
    run.write_config(cfg.to_dict(), device, facts)


def summarise(history: list[EpochRecord]) -> str:
    """Peak and last accuracy, total and per-epoch seconds: the numbers a results table needs."""
    peak = max(history, key=lambda r: r.valid_acc)
    seconds = sum(r.seconds for r in history)
    return (
        f"{len(history)} epochs in {seconds:.1f} s ({seconds / len(history):.2f} s/epoch); valid acc peak "
        f"{peak.valid_acc:.4f} at epoch {peak.epoch}, last {history[-1].valid_acc:.4f}"
    )
