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
import functools
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
from ..data.cifar10 import CIFAR10, data_fingerprint, hold_out
from ..data.loader import DeviceLoader, Shard
from ..device import DevicePolicy, choose_policy, select_device, set_deterministic
from ..errors import Interrupted, NonFiniteLoss, UsageError, UserError
from ..inference.evaluate import evaluate
from ..progress import progress_bar
from . import budget, distributed
from .epoch import (
    NAN_CHECK_EVERY,
    STOP_CHECK_EVERY,
    EpochResult,
    Outcome,
    agreed_check,
    local_check,
    train_one_epoch,
)
from .initialise import conv1_whitening
from .metrics import EpochRecord, Meter
from .ranks import DistInfo, from_environment
from .schedule import total_steps
from .signals import EXIT_CODES, StopOnSignal
from .trainer import Progress, build_trainer, make_loaders, restore, rng_state, weights_finite

log = logging.getLogger("alexnet_cifar")
DIVERGED_HINT = "the learning rate is likely too high for this batch size or recipe; try a smaller --lr"


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
    began = budget.clock()  # a time budget counts from here
    fitted = hold_out(data, cfg.valid_split) if cfg.valid_split else data  # a split too big: refused here
    if resume is not None:
        check_same_data(resume, fitted, run)  # before anything is written
    info = from_environment()
    device = distributed.init(info, select_device(cfg.device))
    policy = choose_policy(device, cfg.amp, cfg.compile, cfg.deterministic)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_deterministic(cfg.deterministic)
    policy.apply()
    # whitening reads thousands of images (seconds): once, before a budget is planned around it
    whitening = conv1_whitening(fitted.train.images, cfg.whiten_eps) if cfg.whiten else None
    if resume is None and cfg.time_budget and cfg.steps:
        raise UsageError(
            f"time_budget = {cfg.time_budget:g} and steps = {cfg.steps} both fix the run's length; "
            "set steps = 0 to let the budget decide, or time_budget = 0 to train the steps"
        )
    planned = None
    if cfg.time_budget and not cfg.steps:  # a resumed budget run has its steps already
        test_images = len(data.test) if cfg.valid_split else 0
        asked, deadline = cfg, began + cfg.time_budget
        cfg, speed = budget.plan(cfg, fitted, test_images, (device, info, policy), deadline)
        planned = budget.Plan(asked, speed, deadline)
    if info.is_main and resume is None:  # first, so that the folder is recognisably a run of this tool
        record_start(run, cfg, data, Runtime(device, info, policy))
    handler = run.attach_log() if info.is_main else None
    clean = False  # whether every rank leaves at the same point (a finish, or a stop they agreed on)
    try:
        if planned is not None:
            log.info(budget_plan(cfg, planned.speed, "measured at start-up"))
        with contextlib.nullcontext(stop) if stop is not None else StopOnSignal() as handlers:
            runtime = Runtime(device, info, policy, handlers, show_progress and info.is_main)
            history = Session(cfg, data, run, runtime, resume, whitening, planned).train()
        if planned is not None:
            used = budget.clock() - began
            log.info(f"time budget {cfg.time_budget:g} s: used {used:.1f} s ({used / cfg.time_budget:.0%})")
        clean = True
        return history
    except (Interrupted, NonFiniteLoss):  # the ranks agreed on these: they leave together
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
    """Where this process trains: its device and how it uses it, its rank, its signal handler,
    whether it draws progress bars."""

    device: torch.device
    info: DistInfo
    policy: DevicePolicy
    stop: StopOnSignal | None = None
    show_progress: bool = False


class Session:
    """One process's part of a run: the loaders, the trainer and where the run stands."""

    def __init__(
        self,
        cfg: TrainConfig,
        data: CIFAR10,
        run: RunDir,
        runtime: Runtime,
        resume: dict[str, Any] | None = None,
        whitening: torch.Tensor | None = None,
        plan: budget.Plan | None = None,
    ) -> None:
        self.cfg, self.data, self.run = cfg, data, run
        self.runtime = runtime
        self.device, self.info, self.stop = runtime.device, runtime.info, runtime.stop
        self.show_progress = runtime.show_progress
        self.resume_from = resume
        self.started_on = started_on(resume, run, self.info)
        # with a validation split, the loaders see the training images less it, and it in the test set's place
        self.fit_data = hold_out(data, cfg.valid_split) if cfg.valid_split else data
        self.train_loader, self.test_loader = make_loaders(cfg, self.fit_data, self.device, self.info, self.started_on)
        steps_per_epoch = len(self.train_loader)
        self.total_steps = check_steps(cfg, steps_per_epoch)
        self.trainer = build_trainer(cfg, self.device, steps_per_epoch, self.info, runtime.policy, whitening)
        self.state = Progress(world_size=self.started_on)
        stop = self.should_stop
        self.check = agreed_check(stop, self.device) if self.info.enabled else local_check(stop)
        self.fingerprint = data_fingerprint(self.fit_data)  # with a split, of the split: a resume checks both
        self.plan = plan  # a budget's first plan, until the run's own steps fix it (budget.replan_step)
        self.replan_at = budget.replan_step(self.total_steps, steps_per_epoch) if plan is not None else 0

    def train(self) -> list[EpochRecord]:
        """Every remaining epoch, top to bottom; returns the records of the epochs trained here."""
        if self.resume_from is not None:
            self.resume(self.resume_from)
        self.announce()
        if self.stopped_at_start():  # a signal during start-up: leave before anything is trained or saved
            signum = self.stop.signum or signal.SIGTERM  # a rank that got no signal stops with the others
            name = signal.Signals(signum).name
            raise Interrupted(f"stopped by {name} before training started; nothing saved", EXIT_CODES[signum])
        if self.info.is_main and self.resume_from is None:  # the kernels before training: random noise
            self.run.save_kernels(-1, self.trainer.final_model().conv1[0].weight)
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
        self.state.world_size = self.started_on
        if self.state.batch >= len(self.train_loader):
            raise UserError(
                f"{self.run.last} is damaged: it stopped at batch {self.state.batch} of an epoch of "
                f"{len(self.train_loader)} batches; restore it, or start a new run with --run-dir"
            )
        if not self.info.is_main:  # an interrupted epoch's partial sums were summed over ranks into rank 0's
            self.state.meter = None
        if self.info.is_main:  # after the resume's checks, so a refused resume leaves the run as it was
            self.run.truncate_metrics(self.state.epoch)
            record_start(self.run, self.cfg, self.data, self.runtime)
        log.info(f"resuming {self.run.path} at epoch {self.state.epoch}, batch {self.state.batch}")

    def announce(self) -> None:
        cfg, info = self.cfg, self.info
        log.info(self.data.summary())
        where = f"{info.world_size} processes on {self.device.type}" if info.enabled else str(self.device)
        log.info(f"training recipe {cfg.recipe!r} on {where} for {cfg.epochs} epochs; run directory {self.run.path}")
        log.info(self.what_valid_means())
        log.info("device policy: " + "; ".join(self.runtime.policy.reasons))
        loader = self.train_loader
        if info.enabled:
            log.info(f"global batch {loader.global_batch} = {loader.batch_size} per rank x {info.world_size} ranks")
        if self.started_on != info.world_size:
            log.info(
                f"the run started on {self.started_on} processes: its global batch of {loader.global_batch} is kept "
                f"({loader.batch_size} per process), and its epochs {'drop' if loader.drop_last else 'keep'} "
                "a short last batch as they did"
            )

    def what_valid_means(self) -> str:
        if not self.cfg.valid_split:
            return (
                "no validation split: the Valid columns are the test set, as in the lesson, and best.pt is "
                "chosen on it (--valid-split N holds out N training images instead)"
            )
        return (
            f"validation split: {self.cfg.valid_split:,} training images held out (the same for every run); the Valid "
            f"columns are them, best.pt is chosen on them, and the test set is evaluated once, at the end"
        )

    def train_epoch(self) -> EpochResult:
        state = self.state
        self.train_loader.set_epoch(state.epoch)
        meter = Meter.from_state(state.meter, self.device, ranks=self.info.world_size)
        meter.batches = state.batch  # this rank's place in the epoch (a saved count is summed over ranks)
        with progress_bar(self.epoch_images(), f"epoch {state.epoch}", self.show_progress) as bar:
            bar.update(meter.samples)
            train = functools.partial(self.train_batches, meter=meter, bar=bar)
            result, new_plan = None, None
            if self.replan_at and state.batch == 0:  # a budget's first epoch: it plans again after its own steps
                result, new_plan = self.replan(train)
                bar.total = self.epoch_images()
            if result is None or (result.outcome is Outcome.FINISHED and meter.batches < self.epoch_end()):
                result = train(meter.batches, self.epoch_end() - meter.batches)
        if new_plan:  # once the bar is gone: a line in the middle of it would break it on a terminal
            log.info(new_plan)
        state.step += result.meter.batches - state.batch
        if result.outcome is Outcome.DIVERGED:
            raise NonFiniteLoss(self.diverged(f"loss became NaN or infinite {self.batch_span(result.meter)}"))
        if not weights_finite(self.trainer):
            raise NonFiniteLoss(self.diverged(f"the weights became NaN or infinite in epoch {state.epoch}"))
        return result

    def train_batches(self, start: int, batches: int, meter: Meter, bar: tqdm) -> EpochResult:
        check = self.check
        return train_one_epoch(
            self.trainer, self.train_loader, start=start, max_batches=batches, meter=meter, check=check, bar=bar
        )

    def epoch_end(self) -> int:
        """The batch this epoch ends before: the run's last epoch may stop short (a time budget's steps
        need not fill it)."""
        return min(len(self.train_loader), self.total_steps - self.state.epoch * len(self.train_loader))

    def epoch_images(self) -> int:
        return min(len(self.fit_data.train), self.epoch_end() * self.train_loader.global_batch)

    def replan(self, train: Callable[[int, int], EpochResult]) -> tuple[EpochResult, str | None]:
        """Train the first `replan_at` steps, timing them, then fix the budget's steps from that speed
        (before any checkpoint, so config.json and every checkpoint hold the final plan). Returns how
        the steps ended and the new plan's log line (None if a stop or a NaN came first)."""
        result, step = budget.time_own_steps(train, self.replan_at, self.device)
        done, self.replan_at = self.replan_at, 0
        if result.outcome is not Outcome.FINISHED:  # the first plan is the plan
            return result, None
        cfg, speed = budget.replan(self.plan, step, done, len(self.train_loader), self.device)
        self.cfg, self.total_steps = cfg, check_steps(cfg, len(self.train_loader))
        self.trainer.reschedule(cfg, len(self.train_loader))
        if self.info.is_main:
            self.run.update_config(cfg.to_dict())
        timed = f"timed on this run's steps {budget.UNTIMED_STEPS + 1}-{done}: the plan is fixed"  # counted from 1
        return result, budget_plan(cfg, speed, timed)

    def should_stop(self) -> bool:
        """Whether a signal asked this process to stop."""
        return self.stop.requested

    def stopped_at_start(self) -> bool:
        """A signal during start-up, on any rank: all ranks must leave before batch 0's all-reduce."""
        if not self.info.enabled:
            return self.stop.requested
        (asked,) = distributed.any_rank_each(torch.tensor([int(self.stop.requested)], device=self.device))
        return asked

    def stop_here(self, meter: Meter, start: float) -> None:
        """A signal stopped the epoch after a batch: checkpoint where it stands, then leave."""
        self.state.batch, self.state.seconds = meter.batches, time.perf_counter() - start
        self.checkpoint(self.run.last, meter.all_reduce())
        signum = self.stop.signum or signal.SIGTERM  # a rank that got no signal stops with the others
        where = f"epoch {self.state.epoch}, batch {self.state.batch}"
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
        if self.info.is_main:  # before the checkpoint, like the row: a resume rewrites what follows it
            self.run.save_kernels(record.epoch, self.trainer.final_model().conv1[0].weight)
        if record.valid_acc > state.best_acc:
            state.best_acc = record.valid_acc
            self.checkpoint(self.run.best)
        self.checkpoint(self.run.last)
        return record

    def evaluate(self, train: Meter, start: float) -> EpochRecord:
        cfg, trainer = self.cfg, self.trainer
        train_loss, train_acc = train.all_reduce().result(cfg.lesson_metrics)  # the epoch's one host sync
        train_seconds = time.perf_counter() - start
        model, criterion = trainer.eval_model(), trainer.criterion
        views = {"tta": cfg.tta, "tta_shift": cfg.tta_shift}
        valid = evaluate(model, self.test_loader, criterion, autocast=trainer.autocast, **views)
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
        state.meter = {**meter.state_dict(), "ranks": self.info.world_size} if meter is not None else None
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
        if self.cfg.valid_split:
            self.test_once()
        log.info(f"final weights: {self.run.weights}")

    def test_once(self) -> None:
        """With a validation split: the final weights on the test set, once, at the end."""
        cfg, trainer, test = self.cfg, self.trainer, self.data.test
        where = {"device": self.device, "channels_last": cfg.channels_last}
        shard = Shard(self.info.rank, self.info.world_size)
        loader = DeviceLoader(test.images, test.labels, cfg.test_batch_size, **where, shard=shard)
        views = {"tta": cfg.tta, "tta_shift": cfg.tta_shift}
        meter = evaluate(trainer.eval_model(), loader, trainer.criterion, autocast=trainer.autocast, **views)
        loss, acc = meter.all_reduce().result(cfg.lesson_metrics)
        log.info(f"Test Loss: {loss:f}, Test Acc: {acc:f} (the test set, once, with the final weights)")
        if self.info.is_main:
            self.run.write_test_result({"test_loss": loss, "test_acc": acc, "images": len(test), "epochs": cfg.epochs})

    def batch_span(self, meter: Meter) -> str:
        """Where the loss turned: between the last check that found it finite and this one."""
        last, every = meter.batches - 1, STOP_CHECK_EVERY if self.info.enabled else NAN_CHECK_EVERY
        return f"at epoch {self.state.epoch}, within batches {max(0, last + 1 - every)}-{last}"

    def diverged(self, what: str) -> str:
        lr = self.trainer.optimizer.param_groups[0]["lr"]
        return f"{what} (lr {lr:g}): {DIVERGED_HINT}; the last good checkpoint {self.run.last} is kept"


def budget_plan(cfg: TrainConfig, speed: budget.Speed, measured: str) -> str:
    return (
        f"time budget {cfg.time_budget:g} s: {cfg.steps:,} steps ({cfg.epochs} epochs, the last one maybe partial) at "
        f"{speed.step * 1000:.1f} ms per step ({measured}) and {speed.per_epoch:.2f} s per evaluation and its files; "
        f"warm-up {cfg.warmup_epochs:.3g} epochs"
    )


def started_on(resume: dict[str, Any] | None, run: RunDir, info: DistInfo) -> int:
    """How many processes the run started on: they set its global batch, which a resume keeps on
    however many processes it runs now. Checkpoints from before this was saved: config.json says."""
    if resume is None:
        return info.world_size
    saved = resume["progress"].get("world_size") or run.info_or_empty().get("environment", {}).get("world_size")
    return saved if isinstance(saved, int) and saved >= 1 else info.world_size


def check_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """The run's optimizer steps; `steps` must end inside the last of `epochs`."""
    if cfg.steps and not (cfg.epochs - 1) * steps_per_epoch < cfg.steps <= cfg.epochs * steps_per_epoch:
        need = math.ceil(cfg.steps / steps_per_epoch)
        raise UsageError(
            f"steps = {cfg.steps} does not end in epoch {cfg.epochs} ({steps_per_epoch} steps per epoch); "
            f"set epochs = {need}, or steps = 0 to train whole epochs"
        )
    return total_steps(cfg, steps_per_epoch)


def check_same_data(resume: dict[str, Any], data: CIFAR10, run: RunDir) -> None:
    """A resumed run must see the data it started on (with a validation split, the same split), or
    it is no longer the run it continues."""
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


def record_start(run: RunDir, cfg: TrainConfig, data: CIFAR10, runtime: Runtime) -> None:
    """config.json: the config as asked, and how this machine ran it (the device policy, with why)."""
    where = {"data_folder": folder_name(data), "synthetic": data.folder is None}
    policy = runtime.policy.to_dict()
    facts = {"world_size": runtime.info.world_size, **where, "autocast": policy["autocast"], "device_policy": policy}
    run.write_config(cfg.to_dict(), runtime.device, facts)


def summarise(history: list[EpochRecord]) -> str:
    """Peak and last accuracy, total and per-epoch seconds: the numbers a results table needs."""
    peak = max(history, key=lambda r: r.valid_acc)
    seconds = sum(r.seconds for r in history)
    return (
        f"{len(history)} epochs in {seconds:.1f} s ({seconds / len(history):.2f} s/epoch); valid acc peak "
        f"{peak.valid_acc:.4f} at epoch {peak.epoch}, last {history[-1].valid_acc:.4f}"
    )
