"""Multi-seed accuracy studies: a recipe run for several seeds, summarised the way results are
reported (mean and spread of the final accuracy, peak against last, time to first reach 70%)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from alexnet_cifar.config import TrainConfig, resolve_config
from alexnet_cifar.report.statistics import spread
from alexnet_cifar.training.metrics import EpochRecord

TARGET = 0.70  # the lesson's accuracy, which every recipe is timed against


@dataclass(frozen=True)
class SeedResult:
    seed: int
    last: float  # test accuracy after the final epoch
    peak: float
    peak_epoch: int
    epochs_to_target: int | None  # epochs run when test accuracy first reached TARGET (None: never)
    seconds_to_target: float | None  # wall seconds of training and evaluation until then
    seconds_per_epoch: float
    epochs: int = 0  # epochs run

    @classmethod
    def from_history(cls, seed: int, history: Sequence[EpochRecord]) -> SeedResult:
        peak = max(history, key=lambda r: r.valid_acc)
        hit = next((i for i, r in enumerate(history) if r.valid_acc >= TARGET), None)
        seconds = [r.seconds for r in history]
        return cls(
            seed=seed,
            last=history[-1].valid_acc,
            peak=peak.valid_acc,
            peak_epoch=peak.epoch,
            epochs_to_target=None if hit is None else hit + 1,
            seconds_to_target=None if hit is None else sum(seconds[: hit + 1]),
            seconds_per_epoch=statistics.mean(seconds),
            epochs=len(history),
        )


def summary_table(recipe: str, results: Sequence[SeedResult]) -> str:
    """A markdown table: one row per seed, then the mean (and standard deviation over seeds); below it
    the last-epoch accuracy's 95% interval, min and max."""
    lines = [
        f"| {recipe} seed | last acc | peak acc (epoch) | epochs to 70% | seconds to 70% | s/epoch |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        to_epochs = "never" if r.epochs_to_target is None else str(r.epochs_to_target)
        to_seconds = "never" if r.seconds_to_target is None else f"{r.seconds_to_target:.1f}"
        lines.append(
            f"| {r.seed} | {r.last:.4f} | {r.peak:.4f} ({r.peak_epoch}) | {to_epochs} | {to_seconds} "
            f"| {r.seconds_per_epoch:.1f} |"
        )
    last = spread([r.last for r in results])
    reached = [r.seconds_to_target for r in results if r.seconds_to_target is not None]
    worst = f"{max(reached):.1f} (slowest seed)" if len(reached) == len(results) else "not every seed"
    peak = statistics.mean(r.peak for r in results)
    per_epoch = statistics.mean(r.seconds_per_epoch for r in results)
    lines.append(f"| mean | {last.mean:.4f} ± {last.sd:.4f} (sd) | {peak:.4f} | | {worst} | {per_epoch:.1f} |")
    ci = f"[{last.low:.4f}, {last.high:.4f}], min {last.min:.4f}, max {last.max:.4f}"
    lines.append(f"\nLast-epoch accuracy over {last.n} seeds: 95% CI of the mean (Student t) {ci}.")
    return "\n".join(lines)


# The ablation ladder: from the lesson to the `best` recipe, one technique per rung, each rung
# keeping everything above it. Rungs run the lesson's 20 epochs; the last one stretches to 60.
LADDER: list[tuple[str, dict[str, Any]]] = [
    ("seed: the lesson (plain SGD lr 0.1, float32)", {}),
    ("+ bf16 autocast (where the device runs it fast)", {"amp": "auto"}),
    ("+ one-cycle lr: 1 epoch linear warm-up, linear decay to 0", {"schedule": "linear", "warmup_epochs": 1.0}),
    ("+ Nesterov momentum 0.9 (lr 0.05)", {"momentum": 0.9, "nesterov": True, "lr": 0.05}),
    ("+ weight decay 5e-4 on weights", {"weight_decay": 5e-4}),
    ("+ label smoothing 0.1", {"label_smoothing": 0.1}),
    ("+ random crop (pad 4) and flip", {"crop_padding": 4, "flip": True}),
    ("+ flip test-time augmentation", {"tta": True, "test_batch_size": 256}),
    ("+ 60 epochs = `best`", {"epochs": 60}),
]


def ladder_configs(seed: int = 0, valid_split: int = 0) -> list[tuple[str, TrainConfig]]:
    """Each rung's resolved config: the seed recipe with the overrides of every rung so far."""
    merged: dict[str, Any] = {"seed": seed, "valid_split": valid_split}
    rungs = []
    for label, overrides in LADDER:
        merged.update(overrides)
        rungs.append((label, resolve_config("seed", merged)))
    return rungs


def ladder_table(rows: Sequence[tuple[str, SeedResult]]) -> str:
    """A markdown table: one rung per row, its gain over the rung above, and its time."""
    lines = [
        "| rung | epochs | last acc | gain | peak acc (epoch) | seconds to 70% | s/epoch | total s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    previous = None
    for label, r in rows:
        gain = "" if previous is None else f"{100 * (r.last - previous):+.2f}"
        to_seconds = "never" if r.seconds_to_target is None else f"{r.seconds_to_target:.0f}"
        lines.append(
            f"| {label} | {r.epochs} | {r.last:.4f} | {gain} | {r.peak:.4f} ({r.peak_epoch}) | {to_seconds} "
            f"| {r.seconds_per_epoch:.1f} | {r.seconds_per_epoch * r.epochs:.0f} |"
        )
        previous = r.last
    return "\n".join(lines)
