"""The image grids of the report and inspect pages: one picture on one Axes, each tile where it belongs."""

import numpy as np
import torch
from matplotlib import colormaps

from alexnet_cifar.report.image_grid import CELL, GAP, Tile, coloured, grid_figure, overlay, resized, rgb


def test_rgb_is_height_width_channels_in_0_to_1():
    image = torch.zeros(3, 2, 4, dtype=torch.uint8)
    image[0, 1, 3] = 255
    picture = rgb(image)
    assert picture.shape == (2, 4, 3) and picture[1, 3, 0] == 1.0 and picture.sum() == 1.0


def test_resized_keeps_each_pixel_a_block():
    picture = np.arange(4, dtype=float).reshape(2, 2, 1).repeat(3, axis=2)
    big = resized(picture)
    half = CELL // 2
    assert big.shape == (CELL, CELL, 3)
    assert (big[:half, :half] == 0).all() and (big[:half, half:] == 1).all()
    assert (big[half:, :half] == 2).all() and (big[half:, half:] == 3).all()
    assert resized(np.ones((CELL, CELL, 3))).shape == (CELL, CELL, 3)


def test_coloured_scales_to_its_own_range_as_imshow_does():
    values = np.array([[2.0, 4.0], [6.0, 10.0]])
    expected = colormaps["viridis"](np.array([[0.0, 0.25], [0.5, 1.0]]))[..., :3]
    np.testing.assert_allclose(coloured(values, "viridis"), expected)
    flat = coloured(np.full((2, 2), 7.0), "jet")  # no range: every value at the map's low end
    np.testing.assert_allclose(flat, colormaps["jet"](np.zeros((2, 2)))[..., :3])


def test_overlay_shows_alpha_of_the_heat():
    picture = np.full((2, 2, 3), 0.5)
    heat = np.array([[0.0, 1.0], [1.0, 0.0]])
    out = overlay(picture, heat, "gray", alpha=0.25)
    np.testing.assert_allclose(out[0, 1], 0.75 * 0.5 + 0.25 * 1.0)
    np.testing.assert_allclose(out[0, 0], 0.75 * 0.5)


def test_each_tile_lands_in_its_cell_with_its_title_above():
    red, blue = np.zeros((CELL, CELL, 3)), np.zeros((CELL, CELL, 3))
    red[..., 0], blue[..., 2] = 1.0, 1.0
    fig = grid_figure([[Tile(red, "red"), Tile(blue)], [Tile(), Tile(blue, "two\nlines")]], ["first row", ""])
    (ax,) = fig.axes
    mosaic = ax.images[0].get_array()
    texts = {t.get_text(): t.get_position() for t in ax.texts}
    assert set(texts) == {"red", "two\nlines", "first row"}
    top = round(texts["red"][1] + 0.5)  # the first row's tiles start right under their titles
    assert top > 0 and (mosaic[top : top + CELL, :CELL] == red).all()
    assert (mosaic[top : top + CELL, CELL + GAP : 2 * CELL + GAP] == blue).all()
    assert (mosaic[top : top + CELL, CELL : CELL + GAP] == 1.0).all()  # white between cells
    second = round(texts["two\nlines"][1] + 0.5)
    assert second > top + CELL and (mosaic[second : second + CELL, :CELL] == 1.0).all()  # a blank tile
    assert (mosaic[second : second + CELL, CELL + GAP :] == blue).all()
    assert texts["two\nlines"][0] == CELL + GAP + CELL / 2  # centred over its tile
    # the figure keeps the mosaic's proportions, so every cell is square on the page
    width, height = fig.get_size_inches()
    assert abs(width / height - mosaic.shape[1] / mosaic.shape[0]) < 1e-9


def test_a_taller_title_makes_room_for_its_lines():
    picture = np.zeros((CELL, CELL, 3))
    one = grid_figure([[Tile(picture, "one")]]).axes[0].images[0].get_array().shape[0]
    two = grid_figure([[Tile(picture, "one\ntwo")]]).axes[0].images[0].get_array().shape[0]
    none = grid_figure([[Tile(picture)]]).axes[0].images[0].get_array().shape[0]
    assert none < one < two
