"""`alexnet-cifar inspect RUN_OR_WEIGHTS [IMAGE...]`: what a trained network learned, where it looks
and what it confuses, as PNGs and one self-contained inspect.html.

    alexnet-cifar inspect runs/RUN                  # into the run directory, beside report.html
    alexnet-cifar inspect model.pt cat.jpg --out look/

Sections: conv1's kernels (and how they formed, from the run's kernels.pt), feature maps, Grad-CAM
and SmoothGrad, nearest training images in fc2's space, a 2-D map of the test set, and the most
confused pairs of classes. The sections that need CIFAR-10 are left out, with a note, without it.
"""

from __future__ import annotations

import base64
import html
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import nn

from ..artifacts.atomic import atomic_write
from ..artifacts.checkpoint import load_model
from ..artifacts.run_dir import INSPECT_FILES, RunDir, foreign_reason
from ..artifacts.run_dir import REPORT_MARK as MARK
from ..data.cifar10 import CIFAR10, CLASSES
from ..data.loader import DeviceLoader, normalize
from ..device import choose_policy
from ..errors import UsageError, UserError
from ..report.image_grid import Tile, coloured, grid_figure, overlay, rgb
from ..report.run_report import check_out, png_bytes, refuse_foreign
from . import MAP_POINTS
from .features import MAP_LAYERS, fc2_features, feature_maps, nearest, pca_2d, tsne_2d
from .kernels import epochs_to_show, kernel_grid
from .saliency import grad_cam, smoothgrad

log = logging.getLogger("alexnet_cifar")
NEIGHBOUR_QUERIES = 6  # test images shown with their nearest training images
NEIGHBOURS = 6
CONFUSED_PAIRS = 4
EXAMPLES = 4  # images per direction of a confused pair
MAX_SHOWN = 12  # images in the feature-map and saliency figures (one row each)
Shown = tuple[str, torch.Tensor, int | None]  # (name, uint8 image (3, 32, 32), true class if known)


@dataclass
class Inspection:
    """The figures as PNG bytes by file name, with a heading and a note each, in page order."""

    sections: list[tuple[str, str, str]] = field(default_factory=list)  # (file name, heading, note)
    figures: dict[str, bytes] = field(default_factory=dict)

    def add(self, name: str, heading: str, note: str, fig: Figure) -> None:
        self.sections.append((name, heading, note))
        self.figures[name] = png_bytes(fig)


def write_inspection(
    source: Path,
    data: CIFAR10 | None,
    device: torch.device,
    images: list[Shown] | None = None,
    out: Path | None = None,
    map_points: int = MAP_POINTS,
) -> Path:
    """Inspect the run directory or weights file `source`; `images`: the user's, else one test image
    per class. Writes into `out` (default: the run directory)."""
    weights, run = weights_of(source)
    out = out or (run.path if run else None)
    if out is None:
        raise UsageError(f"{source} is a weights file: pass --out FOLDER for the inspection")
    check_out(out)
    targets = [out / "inspect.html", *(out / name for name in INSPECT_FILES)]
    for path in targets:  # nothing is written unless every file is new or an earlier inspection's
        refuse_foreign(path)
    model, _ = load_model(weights, device)
    start = time.perf_counter()
    page = inspect_model(model, device, data, images, run, map_points)
    out.mkdir(parents=True, exist_ok=True)
    for name, png in page.figures.items():
        with atomic_write(out / name) as f:
            f.write(png)
    with atomic_write(out / "inspect.html", "w") as f:
        f.write(render(source, weights, page))
    log.info(f"inspection of {weights} in {time.perf_counter() - start:.1f} s: {out / 'inspect.html'}")
    return out / "inspect.html"


def weights_of(source: Path) -> tuple[Path, RunDir | None]:
    """The weights file to inspect, and the run it belongs to (None for a lone file)."""
    if source.suffix == ".onnx":
        raise UsageError(
            f"{source} is an ONNX model, which has no gradients for Grad-CAM and saliency; "
            "inspect the .pt it was exported from (a run's model.pt)"
        )
    if source.is_dir():
        reason = foreign_reason(source)
        if reason:  # the inspection writes into the run directory: only into one of ours
            raise UserError(f"{source} {reason}; pass a run directory, or its weights file with --out FOLDER")
        run = RunDir(source)
        weights = next((p for p in (run.weights, run.last) if p.exists()), None)
        if weights is None:
            raise UserError(f"{source} holds no model.pt or last.pt; pass a run directory written by alexnet-cifar")
        return weights, run
    return source, None


def inspect_model(
    model: nn.Module,
    device: torch.device,
    data: CIFAR10 | None,
    images: list[Shown] | None,
    run: RunDir | None,
    map_points: int = MAP_POINTS,
) -> Inspection:
    """Every section; those that need CIFAR-10 are a note without it."""
    page = Inspection()
    page.add(
        "kernels.png",
        "What conv1 learned",
        "Its 64 kernels of 5x5 RGB, each stretched to full contrast (the AlexNet paper's Figure 3).",
        plot_kernels(model.conv1[0].weight),
    )
    add_kernel_history(page, run)
    shown = images or one_per_class(data)
    if len(shown) > MAX_SHOWN:
        log.info(f"feature maps and saliency: the first {MAX_SHOWN} of {len(shown)} images")
        shown = shown[:MAX_SHOWN]
    if shown:
        names = [name for name, _, _ in shown]
        batch = torch.stack([image for _, image, _ in shown])
        x = normalize(batch, memory_format=torch.channels_last).to(device)
        page.add(
            "feature_maps.png",
            "Feature maps",
            "Each layer's three most active channels (brighter: stronger).",
            plot_feature_maps(model, x, batch, names),
        )
        page.add(
            "where_it_looks.png",
            "Where it looks",
            "Grad-CAM on conv2 and SmoothGrad input gradients, for the predicted class and, where the image's "
            "class is known (test images), the true one.",
            plot_saliency(model, x, batch, names, [label for _, _, label in shown]),
        )
    if data is None:
        page.sections.append(("", "Neighbours, map and confusions", "These need CIFAR-10: pass --data-dir."))
        return page
    # the test set in float32, since the confusions count the model's own predictions from its features
    test_feats = fc2_features(model, loader(data.test.images, device))
    add_neighbours_and_map(page, model, device, data, test_feats, map_points)
    predicted = test_feats_to_predictions(model, test_feats)
    page.add(
        "confusions.png",
        "The confusions that matter",
        "The most confused pairs of classes, with test images of each direction.",
        plot_confusions(data, predicted),
    )
    return page


def add_neighbours_and_map(
    page: Inspection, model: nn.Module, device: torch.device, data: CIFAR10, test_feats: torch.Tensor, map_points: int
) -> None:
    # the training images in half precision where that is faster; the queries at the same precision
    fast = choose_policy(device, "auto").autocast_dtype
    train_feats = fc2_features(model, loader(data.train.images, device), fast)
    queries = torch.linspace(0, len(test_feats) - 1, NEIGHBOUR_QUERIES).long()
    query_feats = fc2_features(model, loader(data.test.images[queries], device), fast)
    page.add(
        "neighbours.png",
        "Nearest training images",
        "Test images (left) and the training images whose fc2 features are nearest (the AlexNet paper's Figure 4).",
        plot_neighbours(data, train_feats, queries, query_feats),
    )
    page.add(
        "feature_map_2d.png",
        "A map of the test set",
        f"fc2 features of {min(map_points, len(test_feats))} "
        "test images in 2-D, by PCA and t-SNE, coloured by true class.",
        plot_map(test_feats, data.test.labels, map_points),
    )


def add_kernel_history(page: Inspection, run: RunDir | None) -> None:
    """The kernels at a few epochs, from the run's kernels.pt (absent for weights files and older runs)."""
    try:
        history = run.kernel_history() if run else {}
    except UserError as exc:
        page.sections.append(("", "How the kernels formed", str(exc)))
        return
    if len(history) < 2:
        why = "a weights file has no history" if run is None else f"{run.kernels} holds no epochs (an older run?)"
        page.sections.append(("", "How the kernels formed", f"Not shown: {why}."))
        return
    start = "from random noise before training (epoch -1)" if -1 in history else f"from epoch {min(history)}"
    page.add(
        "kernels_by_epoch.png",
        "How the kernels formed",
        f"conv1's kernels {start} to the last epoch, from the run's kernels.pt.",
        plot_kernel_history(history),
    )


def loader(images: torch.Tensor, device: torch.device) -> DeviceLoader:
    return DeviceLoader(images, torch.zeros(len(images), dtype=torch.long), 500, device=device, channels_last=True)


@torch.inference_mode()
def test_feats_to_predictions(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """fc3 on the fc2 features: the model's predictions without a second pass over the images."""
    weight, bias = model.fc3.weight.float().cpu(), model.fc3.bias.float().cpu()
    return (features @ weight.T + bias).argmax(1)


def one_per_class(data: CIFAR10 | None) -> list[Shown]:
    """The first test image of each class, with its class."""
    if data is None:
        return []
    labels = data.test.labels
    firsts = [int((labels == c).nonzero()[0]) for c in range(len(data.classes)) if (labels == c).any()]
    return [(data.classes[labels[i]], data.test.images[i], int(labels[i])) for i in firsts]


def plot_kernels(weight: torch.Tensor) -> Figure:
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.imshow(kernel_grid(weight), interpolation="nearest")
    ax.axis("off")
    return fig


def plot_kernel_history(history: dict[int, torch.Tensor]) -> Figure:
    epochs = epochs_to_show(list(history))
    fig = Figure(figsize=(3.2 * len(epochs), 3.6))
    for ax, epoch in zip(fig.subplots(1, len(epochs), squeeze=False)[0], epochs, strict=True):
        ax.imshow(kernel_grid(history[epoch]), interpolation="nearest")
        ax.set_title("before training" if epoch < 0 else f"after epoch {epoch}")
        ax.axis("off")
    return fig


def plot_feature_maps(model: nn.Module, x: torch.Tensor, batch: torch.Tensor, labels: list[str]) -> Figure:
    per_layer = 3
    rows = []
    for row, (label, image) in enumerate(zip(labels, x, strict=True)):
        tiles = [Tile(rgb(batch[row]), label)]
        maps = feature_maps(model, image)
        for name in MAP_LAYERS:
            strongest = maps[name].mean((1, 2)).argsort(descending=True)[:per_layer]
            for channel in strongest.tolist():
                title = f"{name} #{channel}" if row == 0 else ""
                tiles.append(Tile(coloured(maps[name][channel], "viridis"), title))
        rows.append(tiles)
    return grid_figure(rows, inches_per_cell=1.3)


def plot_saliency(
    model: nn.Module, x: torch.Tensor, batch: torch.Tensor, names: list[str], labels: list[int | None]
) -> Figure:
    model.eval()
    with torch.no_grad():  # not inference_mode: the predictions index the gradients below
        predicted = model(x).argmax(1)
    # an image without a known class gets its predicted class in the "true" columns, which stay blank
    true = torch.tensor([p if k is None else k for k, p in zip(labels, predicted.tolist(), strict=True)])
    true = true.to(x.device)
    columns = [
        ("Grad-CAM, predicted", grad_cam(model, x, predicted)),
        ("Grad-CAM, true", grad_cam(model, x, true)),
        ("SmoothGrad, predicted", smoothgrad(model, x, predicted)),
        ("SmoothGrad, true", smoothgrad(model, x, true)),
    ]
    rows = []
    for row in range(len(names)):
        picture = rgb(batch[row])
        tiles = [Tile(picture, f"{names[row]}\npredicted {CLASSES[predicted[row]]}")]
        for title, maps in columns:
            shown = labels[row] is not None or "true" not in title
            tiles.append(Tile(overlay(picture, maps[row]) if shown else picture, title if row == 0 else ""))
        rows.append(tiles)
    return grid_figure(rows, inches_per_cell=1.6)


def plot_neighbours(
    data: CIFAR10, train_feats: torch.Tensor, queries: torch.Tensor, query_feats: torch.Tensor
) -> Figure:
    distances, found = nearest(train_feats, query_feats, NEIGHBOURS)
    rows = []
    for row, q in enumerate(queries.tolist()):
        tiles = [Tile(rgb(data.test.images[q]), f"test: {data.classes[data.test.labels[q]]}")]
        for j in range(NEIGHBOURS):
            i = int(found[row, j])
            title = f"{data.classes[data.train.labels[i]]} {distances[row, j]:.1f}"
            tiles.append(Tile(rgb(data.train.images[i]), title))
        rows.append(tiles)
    return grid_figure(rows)


def plot_map(features: torch.Tensor, labels: torch.Tensor, points: int) -> Figure:
    keep = torch.randperm(len(features), generator=torch.Generator().manual_seed(0))[:points].sort().values
    feats, classes = features[keep], labels[keep].numpy()
    layouts = [("PCA", pca_2d(feats)), ("t-SNE", tsne_2d(feats))]
    fig = Figure(figsize=(12, 5.5))
    for ax, (title, xy) in zip(fig.subplots(1, 2), layouts, strict=True):
        if xy is None:
            why = "t-SNE needs scikit-learn\n(pip install 'alexnet-cifar[inspect]')\nand at least 10 images"
            ax.text(0.5, 0.5, why, ha="center")
            ax.axis("off")
            continue
        for c, name in enumerate(CLASSES):
            mine = classes == c
            ax.scatter(xy[mine, 0], xy[mine, 1], s=4, alpha=0.6, label=name)
        ax.set_title(f"{title} of fc2 features ({len(feats)} test images)")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.axes[0].legend(markerscale=3, fontsize=7, loc="best")
    return fig


def confused_pairs(labels: torch.Tensor, predicted: torch.Tensor, classes: int, count: int) -> list[tuple[int, int]]:
    """The `count` pairs {a, b} with the most test images of a taken for b or b for a, most first."""
    confusion = torch.zeros(classes, classes, dtype=torch.long)
    confusion.index_put_((labels, predicted), torch.ones(len(labels), dtype=torch.long), accumulate=True)
    both = confusion + confusion.T
    pairs = [(a, b) for a in range(classes) for b in range(a + 1, classes) if both[a, b] > 0]
    return sorted(pairs, key=lambda p: (-int(both[p]), p))[:count]


def plot_confusions(data: CIFAR10, predicted: torch.Tensor) -> Figure:
    labels = data.test.labels
    pairs = confused_pairs(labels, predicted, len(data.classes), CONFUSED_PAIRS)
    rows, titles = [], []
    for true, taken in [(a, b) for pair in pairs for (a, b) in (pair, pair[::-1])]:
        found = ((labels == true) & (predicted == taken)).nonzero().flatten().tolist()
        titles.append(f"{data.classes[true]} taken for {data.classes[taken]}: {len(found)} test images")
        shown = [Tile(rgb(data.test.images[i])) for i in found[:EXAMPLES]]
        rows.append(shown + [Tile()] * (EXAMPLES - len(shown)))
    if not rows:
        return grid_figure([[Tile()] * EXAMPLES], ["no test image was confused"])
    return grid_figure(rows, titles)


def sections_html(page: Inspection) -> str:
    """Each section as a heading, its note and its figure (embedded: the page is one file)."""
    body = []
    for name, heading, note in page.sections:
        body.append(f"<h2>{html.escape(heading)}</h2><p>{html.escape(note)}</p>")
        if name:
            png = base64.b64encode(page.figures[name]).decode()
            body.append(f'<figure><img alt="{name}" src="data:image/png;base64,{png}"></figure>')
    return "".join(body)


# On load, the body records how many images the browser could draw (a headless browser test reads it).
IMAGES_LOADED = (
    "<script>addEventListener('load', () => { const all = [...document.images]; document.body.dataset.imagesLoaded ="
    " all.filter(i => i.complete && i.naturalWidth > 0).length + '/' + all.length; });</script>"
)


def render(source: Path, weights: Path, page: Inspection) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{MARK}">
<title>alexnet-cifar inspect: {html.escape(source.name)}</title>
<style>body{{font-family:sans-serif;max-width:1150px;margin:2em auto;color:#222}}img{{max-width:100%}}
figure{{margin:1em 0}}</style></head><body>
<h1>Inside {html.escape(str(source))}</h1><p>weights: {html.escape(str(weights))}</p>
{sections_html(page)}
{IMAGES_LOADED}
</body></html>
"""


def write_explanations(
    model: nn.Module, device: torch.device, images: list[tuple[Path, torch.Tensor]], out: Path
) -> list[Path]:
    """`predict --explain`: for each (file, uint8 image), OUT/<name>.explain.png with the image and
    where the network looks for the class it predicts (Grad-CAM and SmoothGrad)."""
    names = explanation_names([path for path, _ in images])
    for name in names:
        refuse_foreign(out / name)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for (path, image), name in zip(images, names, strict=True):
        x = normalize(image[None], memory_format=torch.channels_last).to(device)
        model.eval()
        with torch.no_grad():  # not inference_mode: the prediction indexes the gradients below
            probs = model(x).softmax(1)[0]
        predicted = probs.argmax()[None]
        picture = rgb(image)
        title = f"{path.name}: {CLASSES[predicted]} {probs[predicted].item():.2f}"
        tiles = [
            Tile(picture, title),
            Tile(overlay(picture, grad_cam(model, x, predicted)[0]), "Grad-CAM"),
            Tile(overlay(picture, smoothgrad(model, x, predicted)[0]), "SmoothGrad"),
        ]
        fig = grid_figure([tiles], inches_per_cell=2.0)
        with atomic_write(out / name) as f:
            f.write(png_bytes(fig))
        written.append(out / name)
    return written


def explanation_names(paths: list[Path]) -> list[str]:
    """<stem>.explain.png for each file, numbered where two files share a stem."""
    names, seen = [], set()
    for path in paths:
        name, n = f"{path.stem}.explain.png", 2
        while name in seen:
            name, n = f"{path.stem}-{n}.explain.png", n + 1
        seen.add(name)
        names.append(name)
    return names
