"""Accuracy against wall time: recipes under time budgets (or their own epochs), several seeds each.

    python benchmarks/frontier.py run --data-dir DATA --variant fast best --seeds 0 1 2
    python benchmarks/frontier.py run --data-dir DATA --variant whiten --budget 60 120 300 --seeds 0 1 2
    python benchmarks/frontier.py plot                    # docs/images/frontier.png from docs/runs/

Every run trains with a validation split of 5,000 training images (the tuning never sees the test
set) and reads the test set once, at its end. Each finished run leaves a small JSON summary in
docs/runs/ (its config, wall time, validation and test accuracy, the command, commit, machine and
date): the plot and the results tables are made from those summaries, never typed by hand.
Runs go one after the other in this process; wall time is fit()'s, from the loaded data to the
final test pass (the ~2 s of Python and data loading before it are not counted).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

from alexnet_cifar.artifacts.run_dir import RunDir, cpu_name
from alexnet_cifar.config import resolve_config
from alexnet_cifar.data.cifar10 import load_cifar10, resolve_data_dir
from alexnet_cifar.training.loop import fit

ROOT = Path(__file__).resolve().parent.parent
SUMMARIES = ROOT / "docs" / "runs"
SPLIT = 5000

# name -> (recipe, overrides). A variant run with --budget gets time_budget set; without, its epochs.
VARIANTS: dict[str, tuple[str, dict]] = {
    "seed": ("seed", {}),
    "fast": ("fast", {}),
    "fast-plain": ("fast", {"whiten": False}),  # fast before whitening
    "best": ("best", {}),
    "fast-lookahead": ("fast", {"lookahead_every": 5}),  # airbench's k; decay 0.95^5 warmed up as (t/T)^3
    "best-lookahead": ("best", {"lookahead_every": 5}),  # the same on best's 60 epochs
}


def run_one(data, variant: str, seed: int, budget: float | None, out: Path) -> dict:
    recipe, overrides = VARIANTS[variant]
    values = {**overrides, "seed": seed, "valid_split": SPLIT}
    if budget:
        values["time_budget"] = budget
    name = f"{variant}-{f'{budget:g}s' if budget else 'epochs'}-s{seed}"
    return run_config(resolve_config(recipe, values), data, out / name, variant, command(variant, seed, budget))


def run_config(cfg, data, path: Path, variant: str, how: str) -> dict:
    """Train `cfg` into the run directory `path` and return its summary (`how`: the command that ran it)."""
    run = RunDir.create(path, overwrite=True)
    start = time.perf_counter()
    history = fit(cfg, data, run, show_progress=False)
    wall = time.perf_counter() - start
    test = json.loads(run.test_result.read_text())
    resolved = json.loads((run.path / "config.json").read_text())["config"]
    return {
        "name": path.name,
        "variant": variant,
        "recipe": cfg.recipe,
        "seed": cfg.seed,
        "time_budget": cfg.time_budget or 0,
        "wall_s": round(wall, 2),
        "epochs": resolved["epochs"],
        "steps": resolved["steps"],
        "valid_acc": history[-1].valid_acc,
        "test_acc": test["test_acc"],
        "config": resolved,
        "command": how,
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
    }


def command(variant: str, seed: int, budget: float | None) -> str:
    when = f" --budget {budget:g}" if budget else ""
    return f"python benchmarks/frontier.py run --data-dir DATA --variant {variant} --seeds {seed}{when}"


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def machine() -> str:
    import os

    import torch

    return f"{os.cpu_count()} CPU cores ({cpu_name()}), torch {torch.__version__}"  # the model: speed differs by it


def cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    data = load_cifar10(resolve_data_dir(args.data_dir))
    SUMMARIES.mkdir(parents=True, exist_ok=True)
    for variant in args.variant:
        for budget in args.budget or [None]:
            for seed in args.seeds:
                summary = run_one(data, variant, seed, budget, args.out)
                (SUMMARIES / f"{summary['name']}.json").write_text(json.dumps(summary, indent=1) + "\n")
                print(f"{summary['name']}: test {summary['test_acc']:.4f} in {summary['wall_s']:.1f} s", flush=True)
    return 0


def read_summaries(folder: Path = SUMMARIES) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def groups(summaries: list[dict]) -> dict[tuple[str, float], list[dict]]:
    """The runs of each (variant, budget): one point of the plot."""
    grouped: dict[tuple[str, float], list[dict]] = {}
    for s in summaries:
        grouped.setdefault((s["variant"], s["time_budget"]), []).append(s)
    return grouped


def points(summaries: list[dict]) -> dict[str, list[tuple[float, float, float, int]]]:
    """Per variant: (mean wall s, mean test acc, std of test acc, seeds) for each budget."""
    import statistics

    curves: dict[str, list[tuple[float, float, float, int]]] = {}
    for (variant, _), runs in sorted(groups(summaries).items()):
        accs = [r["test_acc"] for r in runs]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        curves.setdefault(variant, []).append(
            (statistics.mean(r["wall_s"] for r in runs), statistics.mean(accs), std, len(runs))
        )
    return {v: sorted(p) for v, p in curves.items()}


PLOTTED = ("seed", "fast", "fast-plain", "best")  # the recipes; other variants are comparisons, in the tables


def usual_day(summaries: list[dict]) -> str:
    """The day most runs were measured on ("" without runs)."""
    from collections import Counter

    return Counter(s["date"] for s in summaries).most_common(1)[0][0] if summaries else ""


def other_days(summaries: list[dict]) -> dict[tuple[float, float], str]:
    """(mean wall s, mean test acc) -> date, for the points not measured on the usual day: wall time
    depends on the day's machine (this shared one ran twice as fast on some days)."""
    import statistics

    usual = usual_day(summaries)
    return {
        (statistics.mean(r["wall_s"] for r in runs), statistics.mean(r["test_acc"] for r in runs)): runs[0]["date"]
        for runs in groups(summaries).values()
        if runs[0]["date"] != usual
    }


# Points measured before this script existed, without a validation split (so not comparable point
# for point): docs/RESULTS.md's tables, each with its command there. (label, wall s, test acc, sd)
REFERENCES = [
    ("best, 60 epochs (3 seeds, no split)", 1138.0, 0.8707, 0.0020),  # RESULTS.md: `best` and the ladder's rung 8
    ("seed: the lesson, 20 epochs (no split)", 575.0, 0.7235, 0.0),  # RESULTS.md: the ladder's rung 0
]


def cmd_plot(args: argparse.Namespace) -> int:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot()
    frontier = [s for s in read_summaries() if s["variant"] in PLOTTED]
    for variant, pts in points(frontier).items():
        x, y, err = [p[0] / 60 for p in pts], [100 * p[1] for p in pts], [100 * p[2] for p in pts]
        seeds = sorted({p[3] for p in pts})
        counts = f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else f"{seeds[0]}"
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=f"{variant} ({counts} seeds a point)")
    for (wall, acc), day in other_days(frontier).items():
        where = {"textcoords": "offset points", "xytext": (-40, -18), "fontsize": 7}
        ax.annotate(f"measured {day}", (wall / 60, 100 * acc), **where)
    for label, wall, acc, sd in REFERENCES:
        ax.errorbar([wall / 60], [100 * acc], yerr=[100 * sd], marker="s", mfc="none", capsize=3, ls="", label=label)
    if frontier:  # the processor, and with it the speed, differs by day: docs/RESULTS.md
        ax.set_title(f"points without a date: measured {usual_day(frontier)}", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("wall time on 2 CPU cores (minutes, log scale)")
    ax.set_ylabel("test accuracy (%): mean of seeds, bar = sd")
    ax.axhline(70, color="grey", lw=0.8, ls=":")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and record summaries in docs/runs/")
    run.add_argument("--data-dir", type=Path, help="folder holding cifar-10-batches-py/ (default: $CIFAR10_ROOT)")
    run.add_argument("--variant", nargs="+", choices=sorted(VARIANTS), default=["fast"], help="(default: fast)")
    run.add_argument("--budget", type=float, nargs="+", help="seconds; each a point (default: the recipe's epochs)")
    run.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="(default: 0 1 2)")
    run.add_argument("--out", type=Path, default=Path("runs/frontier"), help="run dirs (default: %(default)s)")
    plot = sub.add_parser("plot", help="docs/images/frontier.png from the summaries")
    plot.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "frontier.png", help="PNG to write")
    args = p.parse_args()
    return cmd_run(args) if args.command == "run" else cmd_plot(args)


if __name__ == "__main__":
    sys.exit(main())
