"""Grids of small images with titles, drawn as one picture on one matplotlib Axes.

matplotlib spends about 13 ms making each Axes; the report and inspect pages show some 300 images,
so one Axes per image cost seconds (most of a report's time). Here the images are laid into one
array and drawn once, and the titles are text on that Axes; the picture looks as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure

CELL = 32  # each image is drawn at 32x32 units (a CIFAR image's pixels; others are resized, nearest)
GAP = 3  # units between cells
LINE_SPACING = 1.25  # a title line's height, in multiples of its font size


@dataclass
class Tile:
    """One cell: an RGB picture (h, w, 3) of floats in [0, 1], or None for a blank cell."""

    picture: np.ndarray | None = None
    title: str = ""


def rgb(image_uint8: torch.Tensor) -> np.ndarray:
    """A (3, h, w) uint8 image as an (h, w, 3) picture in [0, 1]."""
    return image_uint8.permute(1, 2, 0).numpy() / 255.0


def coloured(values: np.ndarray | torch.Tensor, cmap: str) -> np.ndarray:
    """A 2-D array through a colour map, scaled to its own range as imshow does (a flat one: the low end)."""
    values = np.asarray(values, dtype=np.float64)
    span = values.max() - values.min()
    scaled = (values - values.min()) / span if span > 0 else np.zeros_like(values)
    return colormaps[cmap](scaled)[..., :3]


def overlay(picture: np.ndarray, heat: np.ndarray | torch.Tensor, cmap: str = "jet", alpha: float = 0.45) -> np.ndarray:
    """A heat map laid over a picture of the same size, `alpha` of it showing."""
    return (1 - alpha) * picture + alpha * coloured(heat, cmap)


def resized(picture: np.ndarray) -> np.ndarray:
    """A picture of any size as CELL x CELL, nearest neighbour (each source pixel stays a block)."""
    rows = np.arange(CELL) * picture.shape[0] // CELL
    cols = np.arange(CELL) * picture.shape[1] // CELL
    return picture[rows][:, cols]


def grid_figure(
    tiles: list[list[Tile]],
    row_titles: list[str] | None = None,
    inches_per_cell: float = 1.4,
    fontsize: float = 7,
    suptitle: str = "",
) -> Figure:
    """The rows of tiles as one figure; each tile's title sits above it, each row's title (if any)
    above the row at its left edge."""
    cols = max(len(row) for row in tiles)
    units_per_inch = (CELL + GAP) / inches_per_cell
    line = fontsize / 72 * LINE_SPACING * units_per_inch  # one title line, in units
    row_titles = row_titles or [""] * len(tiles)
    bands = [line * max([0, *(t.title.count("\n") + 1 for t in row if t.title)]) for row in tiles]
    bands = [band + (line if heading else 0) for band, heading in zip(bands, row_titles, strict=True)]
    tops = np.cumsum([0.0, *(band + CELL + GAP for band in bands)])
    mosaic = np.ones((int(np.ceil(tops[-1])), cols * (CELL + GAP) - GAP, 3))
    fig = Figure(figsize=(mosaic.shape[1] / units_per_inch, mosaic.shape[0] / units_per_inch))
    ax = fig.add_axes((0, 0, 1, 1))
    for r, row in enumerate(tiles):
        y = round(float(tops[r] + bands[r]))
        if row_titles[r]:
            ax.text(0, tops[r], row_titles[r], ha="left", va="top", fontsize=fontsize)
        for c, tile in enumerate(row):
            x = c * (CELL + GAP)
            if tile.picture is not None:
                mosaic[y : y + CELL, x : x + CELL] = resized(tile.picture)
            if tile.title:
                ax.text(x + CELL / 2, y - 0.5, tile.title, ha="center", va="bottom", fontsize=fontsize)
    ax.imshow(mosaic, interpolation="nearest")
    ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, y=1.0, va="bottom")
    return fig
