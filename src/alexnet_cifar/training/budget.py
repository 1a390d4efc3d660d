"""A time budget: how many optimizer steps fit in the seconds a user gives.

    alexnet-cifar train --recipe best --time-budget 5m

At start-up the run times a few steps (the median of 10-step blocks) and evaluation batches on a
throwaway model (same config, same device, the epoch's first batches), and plans its steps from them:
training, each epoch's evaluation and files, and the final test pass end within the budget, with the
recipe's schedule (warm-up, decay to zero) stretched over those steps. That short measurement is
often 5-10% off on a shared machine, so the run times its own first steps too (a fifth of the plan,
or its first epoch but its last batch if sooner: 703 steps of `best` on CIFAR-10, at no cost) and
plans again from them, once, before any checkpoint is written (config.json is rewritten with it).
The schedule is laid anew over the new count from the step it has reached. A run too short to time
TIMED_STEPS of its own keeps its first plan. The resolved config is saved with the run, so a resume
trains the same steps and never measures again.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter as clock

import torch

from ..artifacts.checkpoint import save_checkpoint
from ..config import TrainConfig
from ..data.cifar10 import CIFAR10
from ..data.loader import DeviceLoader
from ..device import DevicePolicy, sync
from ..errors import UserError
from ..inference.evaluate import evaluate
from . import distributed
from .epoch import Check, EpochResult, Outcome, agreed_check, train_one_epoch
from .ranks import DistInfo
from .trainer import Trainer, build_trainer, make_loaders

UNTIMED_STEPS = 15  # the first steps pay for allocations and kernel choice (and compilation, if on)
TIMED_STEPS = 40  # timed on the throwaway model (under a second of a CPU's training), and at least
# as many of the run's own before it plans again
BLOCK_STEPS = 10  # steps per timed block
# the run's own steps timed: a fifth of the first plan (inside `fast`'s warm-up, a quarter of its
# run, so the lr keeps climbing through the new plan), at most its first epoch but the last batch
# (a short one, whose new shape may cost a recompilation)
REPLAN_SHARE = 0.2
TIMED_EVAL_BATCHES = 3
FILES_PER_EPOCH = 3  # last.pt, best.pt and kernels.pt, each about a checkpoint's cost
PLANNED_SHARE = 0.97  # of the seconds left; checkpoints, logging and timing noise take the rest


@dataclass(frozen=True)
class Speed:
    """What a run's time goes to, measured at start-up."""

    step: float  # seconds per optimizer step
    evaluation: float  # seconds per evaluation pass (each epoch's Valid columns)
    test: float  # seconds of the final pass over the test set (0 without a validation split)
    checkpoint: float = 0.0  # seconds to write one checkpoint (each epoch writes last.pt, maybe best.pt,
    # kernels.pt and a metrics row: counted as FILES_PER_EPOCH checkpoints)

    @property
    def per_epoch(self) -> float:
        """Each epoch's cost besides its steps: the evaluation and the files."""
        return self.evaluation + FILES_PER_EPOCH * self.checkpoint

    @property
    def at_end(self) -> float:
        """The run's last costs: the test pass and model.pt."""
        return self.test + self.checkpoint


def steps_within(seconds: float, speed: Speed, steps_per_epoch: int) -> int:
    """The most steps whose training, one evaluation (and its files) per epoch begun and the run's
    end fit in `seconds`; 0 if not even one step does."""

    def fits(steps: int) -> bool:
        epochs = -(-steps // steps_per_epoch)
        return steps * speed.step + epochs * speed.per_epoch + speed.at_end <= seconds + 1e-9

    # the cost only grows with the steps: bisect the counts that steps alone could fill (about 32
    # checks for a month of millisecond steps), no closed form to land one off in floating point
    most = math.floor((seconds + 1e-9) / speed.step)
    return bisect.bisect_left(range(1, most + 1), True, key=lambda steps: not fits(steps))


def stretch(cfg: TrainConfig, steps: int, steps_per_epoch: int) -> TrainConfig:
    """`cfg` trained for `steps`: the epochs that takes (the last one maybe partial), and the warm-up
    and conv1's frozen start kept at the same fraction of the run as in the recipe."""
    length = steps / steps_per_epoch  # in epochs, fractional
    ratio = length / cfg.epochs
    epochs = math.ceil(length)
    return dataclasses.replace(  # min(): a share of all epochs must not round past them
        cfg,
        steps=steps,
        epochs=epochs,
        warmup_epochs=min(epochs, cfg.warmup_epochs * ratio),
        whiten_freeze_epochs=min(epochs, cfg.whiten_freeze_epochs * ratio),
    )


def plan(
    cfg: TrainConfig,
    data: CIFAR10,
    test_images: int,
    runtime: tuple[torch.device, DistInfo, DevicePolicy],
    deadline: float,
) -> tuple[TrainConfig, Speed]:
    """The config with `steps` set to what fits before `deadline` (a time.perf_counter() value) at the
    speed measured now. `data`: what the run trains and validates on; `test_images`: the final test
    pass's (0: none)."""
    device, info, policy = runtime
    train, valid = make_loaders(cfg, data, device, info)
    speed = measure(cfg, train, valid, test_images, device, info, policy)
    left = deadline - clock()  # start-up and the measurement are spent already
    # every rank plans from the same figures, but its own clock: the ranks take the smallest plan
    steps = distributed.least(steps_within(left * PLANNED_SHARE, speed, len(train)), device)
    if steps == 0:
        need = speed.step + speed.per_epoch + speed.at_end
        spent = cfg.time_budget - left
        raise UserError(
            f"time budget {cfg.time_budget:g} s is too short: {spent:.1f} s went to start-up and one step and one "
            f"evaluation take about {need:.1f} s more here; give at least {spent + 2 * need + 1:.0f}s"
        )
    return stretch(cfg, steps, len(train)), speed


@dataclass(frozen=True)
class Plan:
    """What a budget run needs to plan again from its own steps: the config as asked (before
    `stretch`), the speed measured at start-up and the deadline (a time.perf_counter() value)."""

    asked: TrainConfig
    speed: Speed
    deadline: float


def replan_step(steps: int, steps_per_epoch: int) -> int:
    """The step after which a run of `steps` (the first plan) plans again from its own: REPLAN_SHARE
    of them or its first epoch but the last batch, whichever is sooner; 0 (never) if that times
    fewer than TIMED_STEPS."""
    at = min(steps_per_epoch - 1, round(REPLAN_SHARE * steps))
    return at if at - UNTIMED_STEPS >= TIMED_STEPS else 0


def time_own_steps(
    train: Callable[[int, int], EpochResult], at: int, device: torch.device
) -> tuple[EpochResult, float]:
    """The run's first `at` steps through `train(start, batches)`, and the seconds per step of those
    after the first UNTIMED_STEPS (0.0 if the epoch did not get that far: a stop or a NaN)."""
    result = train(0, UNTIMED_STEPS)
    if result.outcome is not Outcome.FINISHED:
        return result, 0.0
    sync(device)
    begin = clock()
    result = train(UNTIMED_STEPS, at - UNTIMED_STEPS)
    sync(device)
    seconds = clock() - begin
    return result, seconds / (at - UNTIMED_STEPS) if result.outcome is Outcome.FINISHED else 0.0


def replan(plan: Plan, step: float, done: int, steps_per_epoch: int, device: torch.device) -> tuple[TrainConfig, Speed]:
    """The asked config stretched over the most steps that fit before the deadline at `step` seconds
    a step (the slowest rank's), `done` of them (all in the first epoch, before its evaluation)
    trained already; never fewer than `done` (a run that has spent its budget ends there, its lr
    not yet decayed)."""
    speed = dataclasses.replace(plan.speed, step=distributed.max_each(torch.tensor([step], device=device))[0])
    left = (plan.deadline - clock()) * PLANNED_SHARE
    # the steps done are paid for: the cost of a whole run of `steps` less theirs must fit in what is left
    steps = max(done, steps_within(left + done * speed.step, speed, steps_per_epoch))
    return stretch(plan.asked, distributed.least(steps, device), steps_per_epoch), speed


def measure(
    cfg: TrainConfig,
    train: DeviceLoader,
    valid: DeviceLoader,
    test_images: int,
    device: torch.device,
    info: DistInfo,
    policy: DevicePolicy,
) -> Speed:
    """Seconds per step and per evaluation pass, on a throwaway trainer of the same config (its
    model is built from the seed like the real one, and nothing it does reaches the run).
    Distributed: the slowest rank's figures, so every rank plans the same steps."""
    # the same speed without the data-dependent start (whitening reads thousands of images)
    trainer = build_trainer(dataclasses.replace(cfg, whiten=False), device, len(train), info, policy)
    # through the training loop itself: batches, forward, step, metrics and checks, as the run will
    untimed = min(UNTIMED_STEPS, len(train) - 1)
    check = agreed_check(lambda: False, device) if info.enabled else None  # the ranks leave a step together
    if untimed:
        train_one_epoch(trainer, train, max_batches=untimed, check=check)
    step = statistics.median(timed_blocks(trainer, train, untimed, min(TIMED_STEPS, len(train) - untimed), check))
    per_image = eval_seconds_per_image(trainer, valid, cfg)
    n_valid = len(valid.labels) / valid.world_size
    figures = [step, per_image * n_valid, per_image * test_images / valid.world_size, checkpoint_seconds(trainer)]
    return Speed(*distributed.max_each(torch.tensor(figures, device=device)))


def timed_blocks(
    trainer: Trainer, train: DeviceLoader, start: int, steps: int, check: Check | None = None
) -> list[float]:
    """Seconds per step of each block of BLOCK_STEPS steps from batch `start` on: their median
    shrugs off a moment when the machine was busy elsewhere, which a mean would spread over the plan."""
    blocks = []
    for first in range(start, start + steps, BLOCK_STEPS):
        n = min(BLOCK_STEPS, start + steps - first)
        sync(train.device)
        begin = clock()
        done = train_one_epoch(trainer, train, start=first, max_batches=n, check=check).meter.batches  # new meter
        sync(train.device)
        blocks.append((clock() - begin) / done)
    return blocks


def checkpoint_seconds(trainer: Trainer) -> float:
    """Seconds to write one checkpoint as a run does (serialise, write, fsync, rename), into a
    temporary folder that goes with it."""
    with tempfile.TemporaryDirectory() as folder:
        start = clock()
        save_checkpoint(Path(folder) / "probe.pt", trainer.state_dict())
        return clock() - start


def eval_seconds_per_image(trainer: Trainer, valid: DeviceLoader, cfg: TrainConfig) -> float:
    """Evaluation seconds per image (with the run's test-time augmentation), after one untimed batch."""
    views = {"autocast": trainer.autocast, "tta": cfg.tta, "tta_shift": cfg.tta_shift}
    evaluate(trainer.eval_model(), valid, trainer.criterion, max_batches=1, **views)
    batches = min(TIMED_EVAL_BATCHES, len(valid))
    sync(valid.device)
    start = clock()
    meter = evaluate(trainer.eval_model(), valid, trainer.criterion, max_batches=batches, **views)
    if not meter.samples:  # a rank whose share of a small split is empty: the other ranks' figures count
        return 0.0
    meter.result()  # waits for the device
    return (clock() - start) / meter.samples
