"""One epoch of training: the lesson's inner loop on device-resident batches, and how it ended.

An epoch ends in one of three ways (`Outcome`): it finishes, a signal stops it after a batch, or
the loss stops being finite (before that batch's step reaches the weights). `check` decides, once
per batch, with as few host syncs as the device needs.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from ..data.loader import DeviceLoader
from ..device import autocast
from ..progress import POSTFIX_EVERY
from . import distributed
from .metrics import Meter
from .trainer import Trainer

STOP_CHECK_EVERY = 10  # batches between the ranks' agreement on a signal, in distributed runs
NAN_CHECK_EVERY = 50  # batches between reads of the on-device non-finite flag (a host sync on GPUs)


class Outcome(enum.Enum):
    FINISHED = "finished"  # every batch of the epoch (or of max_batches) was trained
    STOPPED = "stopped"  # a signal asked for it after a batch
    DIVERGED = "diverged"  # a loss was NaN or infinite (the weights in memory are not saved after it)


@dataclass
class EpochResult:
    outcome: Outcome
    meter: Meter  # the epoch's sums so far; `.batches` says how far it got


Check = Callable[[Meter, int, bool], "Outcome | None"]


def train_one_epoch(
    trainer: Trainer,
    loader: DeviceLoader,
    *,
    max_batches: int | None = None,
    start: int = 0,
    meter: Meter | None = None,
    check: Check | None = None,
    bar: tqdm | None = None,
) -> EpochResult:
    """Train over the loader's epoch from batch `start`, and say how the epoch ended. Before each
    step, `check(meter, batch, last)` may end the epoch: at once on a non-finite loss, after the
    step on a stop (default: `local_check()`, which never stops)."""
    model = trainer.step_model
    model.train()
    meter = meter or Meter(loader.device)
    check = check or local_check()
    end = len(loader) if max_batches is None else min(len(loader), start + max_batches)
    for i, (images, labels) in enumerate(loader.batches(start), start):
        with autocast(loader.device, trainer.autocast):
            logits = model(images)
            loss = trainer.criterion(logits, labels)
        meter.update(loss, logits, labels)
        last = i + 1 == end
        verdict = check(meter, i, last)
        if verdict is Outcome.DIVERGED:  # before the step: a non-finite loss never reaches the weights
            return EpochResult(verdict, meter)
        trainer.step(loss)
        show(bar, meter, i, len(labels))
        if verdict is Outcome.STOPPED:
            return EpochResult(verdict, meter)
        if last:
            break
    return EpochResult(Outcome.FINISHED, meter)


def local_check(stop: Callable[[], bool] | None = None) -> Check:
    """One process's check: the loss every NAN_CHECK_EVERY batches and at the end (each a host sync
    on GPUs), and `stop` at every batch but the epoch's last."""

    def check(meter: Meter, batch: int, last: bool) -> Outcome | None:
        if (last or (batch + 1) % NAN_CHECK_EVERY == 0) and not meter.finite():
            return Outcome.DIVERGED
        if not last and stop is not None and stop():  # a stop saves the meter: it must be finite
            return Outcome.STOPPED if meter.finite() else Outcome.DIVERGED
        return None

    return check


def agreed_check(stop: Callable[[], bool], device: torch.device) -> Check:
    """Every rank's check in a distributed run: one all-reduce every STOP_CHECK_EVERY batches and at
    the end carries both flags, so all ranks leave at the same batch (a rank that left alone would
    leave the others blocked in the next gradient all-reduce)."""

    def check(meter: Meter, batch: int, last: bool) -> Outcome | None:
        if not last and (batch + 1) % STOP_CHECK_EVERY:
            return None
        asked = torch.tensor(int(stop()), dtype=torch.int32, device=device)
        stopping, diverged = distributed.any_rank_each(torch.stack([asked, (~meter.finite_flag()).int()]))
        if diverged:
            return Outcome.DIVERGED
        return Outcome.STOPPED if stopping and not last else None

    return check


def show(bar: tqdm | None, meter: Meter, batch: int, images: int) -> None:
    """Advance the progress bar; the running loss costs a host sync, so only every POSTFIX_EVERY batches."""
    if bar is None or bar.disable:
        return
    bar.update(images)
    if (batch + 1) % POSTFIX_EVERY == 0:
        bar.set_postfix(loss=f"{meter.running_loss():.3f}", refresh=False)
