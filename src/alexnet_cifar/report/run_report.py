"""`alexnet-cifar report runs/RUN`: a run's learning curves beside the lesson's, its test-set figures,
config and environment, as PNGs and one self-contained report.html."""

from __future__ import annotations

import base64
import html
import io
import logging
import os
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..artifacts.atomic import atomic_write
from ..artifacts.checkpoint import load_model
from ..artifacts.run_dir import REPORT_MARK as MARK
from ..artifacts.run_dir import RunDir, has_report_mark
from ..data.cifar10 import CIFAR10
from ..errors import UsageError, UserError
from ..inference.evaluate import ClassificationReport, classification_report, logits_on_test_set
from ..training.metrics import EpochRecord
from .image_grid import Tile, grid_figure, rgb
from .lesson_run import LESSON_HISTORY

if TYPE_CHECKING:
    from ..inspection.page import Inspection

log = logging.getLogger("alexnet_cifar")
WRONG_SHOWN = 24  # images in the most-confidently-wrong grid


def read_metrics(run_dir: Path) -> dict[str, list[float]]:
    """metrics.csv as one list per column."""
    run = RunDir(run_dir)
    if not run.metrics.is_file():
        raise UserError(f"{run.metrics} is missing; pass a run directory written by alexnet-cifar train")
    history = run.history()
    if not history:
        raise UserError(f"{run.metrics} has no epochs yet; train at least one epoch first")
    return {f.name: [float(getattr(r, f.name)) for r in history] for f in fields(EpochRecord)}


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": MARK})
    return buf.getvalue()


def plot_curves(metrics: dict[str, list[float]], valid_split: int = 0) -> bytes:
    fig = Figure(figsize=(11, 4))
    lesson_epochs = list(range(len(LESSON_HISTORY["valid_acc"])))
    for ax, kind in zip(fig.subplots(1, 2), ("loss", "acc"), strict=True):
        for split in ("train", "valid"):
            ax.plot(metrics["epoch"], metrics[f"{split}_{kind}"], "-", marker="o", ms=3, label=f"{split} (this run)")
        for split in ("train", "valid"):
            ax.plot(lesson_epochs, LESSON_HISTORY[f"{split}_{kind}"], "--", alpha=0.6, label=f"{split} (the lesson)")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("accuracy" if kind == "acc" else "cross-entropy loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    which = (
        f"valid = {valid_split:,} held-out training images" if valid_split else "valid = the test set, as in the lesson"
    )
    fig.suptitle(f"Learning curves ({which})")
    return png_bytes(fig)


def plot_confusion(report: ClassificationReport) -> bytes:
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    matrix = np.array(report.confusion)
    im = ax.imshow(matrix, cmap="Blues")
    ticks = range(len(report.classes))
    ax.set_xticks(ticks, report.classes, rotation=45, ha="right")
    ax.set_yticks(ticks, report.classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    half = matrix.max() / 2
    for i in ticks:
        for j in ticks:
            value = int(matrix[i, j])
            ax.text(j, i, str(value), ha="center", va="center", fontsize=7, color="white" if value > half else "black")
    fig.colorbar(im, ax=ax)
    ax.set_title("Confusion matrix (test set)")
    return png_bytes(fig)


def plot_per_class(report: ClassificationReport) -> bytes:
    fig = Figure(figsize=(8, 3.5))
    ax = fig.subplots()
    bars = ax.bar(report.classes, report.per_class, color="tab:blue")
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.axhline(report.top1, color="tab:red", ls="--", label=f"overall {report.top1:.3f}")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=8)
    ax.set_title("Per-class accuracy (test set)")
    return png_bytes(fig)


def plot_most_wrong(images: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> bytes:
    probs = logits.softmax(1)
    confidence, predicted = probs.max(1)
    wrong = (predicted != labels).nonzero().flatten()
    order = wrong[confidence[wrong].argsort(descending=True)][:WRONG_SHOWN]
    cols = 8
    tiles = [
        Tile(rgb(images[i]), f"true {classes[labels[i]]}\npred {classes[predicted[i]]} {confidence[i]:.2f}")
        for i in order.tolist()
    ]
    rows = [tiles[i : i + cols] for i in range(0, len(tiles), cols)] or [[Tile()]]
    return png_bytes(grid_figure(rows, suptitle="Most confidently wrong test images"))


def testset_figures(
    weights: Path, data: CIFAR10, device: torch.device
) -> tuple[dict[str, bytes], ClassificationReport]:
    model, _ = load_model(weights, device)
    logits, labels = logits_on_test_set(model, data, device)
    report = classification_report(logits, labels, data.classes)
    figures = {
        "confusion.png": plot_confusion(report),
        "per_class.png": plot_per_class(report),
        "most_wrong.png": plot_most_wrong(data.test.images, logits, labels, list(data.classes)),
    }
    return figures, report


def write_report(run_dir: Path, data: CIFAR10 | None, device: torch.device) -> Path:
    """Write the PNGs and report.html into `run_dir`; returns the HTML file's path."""
    metrics = read_metrics(run_dir)
    info = RunDir(run_dir).info_or_empty()
    figures = {"curves.png": plot_curves(metrics, info.get("config", {}).get("valid_split") or 0)}
    report = inside = None
    weights = next((p for p in (run_dir / "model.pt", run_dir / "last.pt") if p.exists()), None)
    if data is not None and weights is not None:
        more, report = testset_figures(weights, data, device)
        figures.update(more)
    if weights is not None:
        inside = look_inside(weights, data, device, run_dir)
    out = run_dir / "report.html"
    written = {**figures, **(inside.figures if inside else {})}
    for path in [out, *(run_dir / name for name in written)]:
        refuse_foreign(path)
    for name, content in written.items():
        with atomic_write(run_dir / name) as f:
            f.write(content)
    table = headline(metrics, report, weights, info, RunDir(run_dir).read_test_result())
    page = render_html(run_dir.name, table, info, figures, has_test_set=report is not None, inside=inside)
    with atomic_write(out, "w") as f:
        f.write(page)
    return out


def look_inside(weights: Path, data: CIFAR10 | None, device: torch.device, run_dir: Path) -> Inspection | None:
    """What the network learned: inspect's sections; None, with a notice, when the weights cannot be
    read (the report goes on with its curves, as it always could)."""
    from ..inspection.page import inspect_model

    try:
        model, _ = load_model(weights, device)
    except UserError as exc:
        log.info(f"{exc}; the report goes on without what the network learned")
        return None
    return inspect_model(model, device, data, None, RunDir(run_dir))


def check_out(out: Path) -> None:
    """Before any work: an output folder must be a folder, or not exist yet."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a folder (it is created if missing)")


def refuse_foreign(path: Path) -> None:
    """A report (or an inspection) replaces only files an earlier one wrote (they carry MARK near their start)."""
    if not os.path.lexists(path):
        return
    if not has_report_mark(path):
        raise UserError(f"{path} was not written by alexnet-cifar report or inspect; move it away first")


def _table(rows: dict[str, Any]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    return f"<table>{body}</table>"


def headline(
    metrics: dict[str, list[float]],
    report: ClassificationReport | None,
    weights: Path | None,
    info: dict[str, Any] | None = None,
    test_result: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report's summary table: epochs, peak and last per-epoch accuracy (on the validation split,
    or else on the test set, which then also chose best.pt), speed, and the test-set scores."""
    split = (info or {}).get("config", {}).get("valid_split") or 0
    which = f"validation ({split:,} held-out training images)" if split else "test (the per-epoch Valid column)"
    best = max(range(len(metrics["epoch"])), key=lambda i: metrics["valid_acc"][i])
    rows = {
        "epochs": len(metrics["epoch"]),
        f"peak {which} accuracy": f"{metrics['valid_acc'][best]:.4f} (epoch {int(metrics['epoch'][best])})",
        f"last {which} accuracy": f"{metrics['valid_acc'][-1]:.4f}",
        "best.pt chosen on": "the validation split" if split else "the test set (no validation split)",
        "seconds per epoch": f"{sum(metrics['seconds']) / len(metrics['seconds']):.1f}",
        "weights evaluated": weights.name if weights else "none",
    }
    if test_result is not None:
        rows["test accuracy, measured once at the end"] = f"{test_result['test_acc']:.4f}"
    if report is not None:
        rows.update({"top-1": f"{report.top1:.4f}", "top-5": f"{report.top5:.4f}", "loss": f"{report.loss:.4f}"})
    return rows


def render_html(
    run_name: str,
    headline: dict[str, Any],
    info: dict[str, Any],
    figures: dict[str, bytes],
    *,
    has_test_set: bool,
    inside: Inspection | None = None,
) -> str:
    from ..inspection.page import sections_html  # the inspection draws with this module's helpers

    images = "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,{base64.b64encode(png).decode()}"></figure>'
        for name, png in figures.items()
    )
    missing = "" if has_test_set else "<p>Test-set figures need the CIFAR-10 data and the run's weights.</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{MARK}">
<title>alexnet-cifar report: {html.escape(run_name)}</title>
<style>body{{font-family:sans-serif;max-width:1150px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left}}
img{{max-width:100%}}figure{{margin:1em 0}}</style></head><body>
<h1>Run {html.escape(run_name)}</h1>
{_table(headline)}
{images}{missing}
{"<h1>What the network learned</h1>" + sections_html(inside) if inside else ""}
<h2>Config</h2>{_table(info.get("config", {}))}
<h2>Environment</h2>{_table(info.get("environment", {}))}
</body></html>
"""
