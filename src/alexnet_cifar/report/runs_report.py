"""`alexnet-cifar report RUN1 RUN2 ... --out DIR`: several runs on one page. Each run's curve, each
recipe's mean curve with the range over its seeds, and each recipe's final numbers with 95% intervals.

    alexnet-cifar report runs/best-s0 runs/best-s1 runs/best-s2 runs/fast-s* --out runs/compare
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..artifacts.atomic import atomic_write
from ..artifacts.run_dir import RunDir
from ..errors import UserError
from ..training.metrics import EpochRecord
from .run_report import MARK, check_out, png_bytes, refuse_foreign
from .statistics import spread

FILES = ("runs.html", "runs_curves.png", "runs_by_recipe.png")


@dataclass(frozen=True)
class Run:
    path: Path
    recipe: str
    seed: int
    valid_split: int
    history: list[EpochRecord]


def read_runs(paths: list[Path]) -> list[Run]:
    runs = []
    for path in paths:
        config = RunDir(path).read_info().get("config") if path.is_dir() else None
        if not isinstance(config, dict):
            raise UserError(f"{path} is not a run directory of alexnet-cifar (no config.json); pass run directories")
        history = RunDir(path).history()
        if not history:
            raise UserError(f"{path} has no finished epoch in metrics.csv; pass runs that trained at least one")
        recipe, seed = str(config.get("recipe")), int(config.get("seed", 0))
        runs.append(Run(path, recipe, seed, int(config.get("valid_split") or 0), history))
    return runs


def by_recipe(runs: list[Run]) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.recipe].append(run)
    return dict(sorted(groups.items()))


def plot_runs(runs: list[Run]) -> Figure:
    fig = Figure(figsize=(10, 4.5))
    ax = fig.subplots()
    colours = {recipe: f"C{i}" for i, recipe in enumerate(by_recipe(runs))}
    for run in runs:
        epochs = [r.epoch for r in run.history]
        label = f"{run.recipe} seed {run.seed} ({run.path.name})"
        ax.plot(epochs, [r.valid_acc for r in run.history], color=colours[run.recipe], lw=1, alpha=0.8, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("Valid accuracy (per epoch)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def plot_groups(groups: dict[str, list[Run]]) -> Figure:
    """Each recipe's mean curve over its seeds, with the band from the lowest to the highest seed,
    over the epochs every one of its runs has."""
    fig = Figure(figsize=(10, 4.5))
    ax = fig.subplots()
    for i, (recipe, runs) in enumerate(groups.items()):
        epochs = min(len(r.history) for r in runs)
        accs = np.array([[rec.valid_acc for rec in r.history[:epochs]] for r in runs])
        x = np.arange(epochs)
        ax.plot(x, accs.mean(0), color=f"C{i}", label=f"{recipe}: mean of {len(runs)} seeds")
        ax.fill_between(x, accs.min(0), accs.max(0), color=f"C{i}", alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("Valid accuracy (mean, band: min-max)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def group_rows(groups: dict[str, list[Run]]) -> list[list[str]]:
    rows = []
    for recipe, runs in groups.items():
        last = spread([r.history[-1].valid_acc for r in runs])
        peak = spread([max(rec.valid_acc for rec in r.history) for r in runs])
        per_epoch = np.mean([np.mean([rec.seconds for rec in r.history]) for r in runs])
        seeds = ", ".join(str(r.seed) for r in sorted(runs, key=lambda r: r.seed))
        rows.append([recipe, seeds, last.text(), f"{peak.mean * 100:.2f}%", f"{per_epoch:.1f}"])
    return rows


def write_runs_report(paths: list[Path], out: Path) -> Path:
    runs = read_runs(paths)
    check_out(out)
    for name in FILES:
        refuse_foreign(out / name)
    groups = by_recipe(runs)
    figures = {"runs_curves.png": png_bytes(plot_runs(runs)), "runs_by_recipe.png": png_bytes(plot_groups(groups))}
    out.mkdir(parents=True, exist_ok=True)
    for name, png in figures.items():
        with atomic_write(out / name) as f:
            f.write(png)
    with atomic_write(out / "runs.html", "w") as f:
        f.write(render(runs, groups, figures))
    return out / "runs.html"


def render(runs: list[Run], groups: dict[str, list[Run]], figures: dict[str, bytes]) -> str:
    import base64

    head = ["recipe", "seeds", "last-epoch accuracy: mean ± 95% CI, sd, range", "peak (mean)", "s/epoch"]
    table = "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
    table += "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in group_rows(groups)
    )
    on_test = [r.path.name for r in runs if not r.valid_split]
    note = (
        f"Without a validation split the Valid column is the test set ({len(on_test)} of {len(runs)} runs)."
        if on_test
        else "Every run has a validation split: the Valid column is held-out training images."
    )
    images = "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,{base64.b64encode(png).decode()}"></figure>'
        for name, png in figures.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{MARK}">
<title>alexnet-cifar: {len(runs)} runs</title>
<style>body{{font-family:sans-serif;max-width:1150px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left}}
img{{max-width:100%}}</style></head><body>
<h1>{len(runs)} runs, {len(groups)} recipes</h1>
<table>{table}</table><p>{html.escape(note)}</p>
{images}
</body></html>
"""
