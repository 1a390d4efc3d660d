"""`alexnet-cifar compare RUN_A... --against RUN_B...`: is A better than B, and by how much?

    alexnet-cifar compare runs/best-seed* --against runs/fast-seed*

Finished runs are paired by their seed (config.json). Each run's number is its test accuracy: with
a validation split, the one measured once at the end (test.json); without, its last epoch's (never
its peak, which was picked on the same test set).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..artifacts.run_dir import RunDir
from ..errors import UserError
from .statistics import PairedDifference, Spread, paired_difference, spread


@dataclass(frozen=True)
class RunResult:
    path: Path
    recipe: str
    seed: int
    last_acc: float  # the test accuracy described above
    epochs: int
    on: str  # where that number comes from


def read_run(path: Path) -> RunResult:
    """The seed and last-epoch accuracy of a finished (or stopped) run."""
    run = RunDir(path)
    config = run.read_info().get("config") if path.is_dir() else None
    if not isinstance(config, dict):
        raise UserError(f"{path} is not a run directory of alexnet-cifar (no config.json); pass run directories")
    history = run.history()
    epochs, seed = config.get("epochs"), config.get("seed", 0)
    if not (isinstance(epochs, int) and isinstance(seed, int)):
        raise UserError(f"{run.config} is damaged (epochs or seed is not an integer); restore it")
    if len(history) < epochs or not run.weights.exists():
        raise UserError(f"{path} is not finished ({len(history)} of {epochs} epochs); compare finished runs")
    if config.get("valid_split"):
        test = run.read_test_result()
        if test is None:
            raise UserError(f"{path} has a validation split but no test.json; resume it to its end")
        return RunResult(path, str(config.get("recipe")), seed, test["test_acc"], len(history), "test, once")
    return RunResult(path, str(config.get("recipe")), seed, history[-1].valid_acc, len(history), "test, last epoch")


def pair_by_seed(a: list[RunResult], b: list[RunResult]) -> list[tuple[RunResult, RunResult]]:
    for side, runs in (("A", a), ("B", b)):
        seeds = [r.seed for r in runs]
        twice = sorted({s for s in seeds if seeds.count(s) > 1})
        if twice:
            raise UserError(f"group {side} has two runs of seed {twice[0]}; pass one run per seed on each side")
    by_seed = {r.seed: r for r in b}
    lonely = sorted({r.seed for r in a} ^ set(by_seed))
    if lonely:
        raise UserError(
            f"seed {lonely[0]} is in one group only: runs are compared seed by seed, so pass the same seeds "
            "on both sides"
        )
    return [(r, by_seed[r.seed]) for r in sorted(a, key=lambda r: r.seed)]


@dataclass(frozen=True)
class Comparison:
    pairs: list[tuple[RunResult, RunResult]]
    a: Spread
    b: Spread
    difference: PairedDifference

    def text(self) -> str:
        lines = [f"{'seed':>6}  {'A':>8}  {'B':>8}  {'A - B':>8}"]
        for ra, rb in self.pairs:
            lines.append(f"{ra.seed:>6}  {ra.last_acc:8.4f}  {rb.last_acc:8.4f}  {ra.last_acc - rb.last_acc:+8.4f}")
        lines += [
            f"A ({recipes_of([p[0] for p in self.pairs])}): {self.a.text()}",
            f"B ({recipes_of([p[1] for p in self.pairs])}): {self.b.text()}",
            self.difference.text(),
            "(each run's test accuracy: " + ", ".join(sorted({r.on for pair in self.pairs for r in pair})) + ")",
        ]
        return "\n".join(lines)


def recipes_of(runs: list[RunResult]) -> str:
    return ", ".join(sorted({r.recipe for r in runs}))


def compare_runs(a_paths: list[Path], b_paths: list[Path], target: float = 0.005) -> Comparison:
    pairs = pair_by_seed([read_run(p) for p in a_paths], [read_run(p) for p in b_paths])
    a = [ra.last_acc for ra, _ in pairs]
    b = [rb.last_acc for _, rb in pairs]
    return Comparison(pairs, spread(a), spread(b), paired_difference(a, b, target))
