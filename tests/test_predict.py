import json
import os
import struct
import threading
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet_cifar.artifacts.checkpoint import save_weights
from alexnet_cifar.cli import main
from alexnet_cifar.data.cifar10 import CLASSES
from alexnet_cifar.inference.predict import decode_rgb, find_images, load_image, predict_files, read_image
from alexnet_cifar.model import AlexNet


@pytest.fixture
def images(tmp_path):
    """One file per kind of input the command must handle."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    rgb = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / "a.png")
    Image.fromarray(rgb).save(folder / "b.jpg", quality=90)
    Image.fromarray(rgb).save(folder / "c.bmp")
    Image.fromarray(rgb).save(folder / "d.webp")
    Image.fromarray(rgb[:, :, 0]).save(folder / "grey.png")
    Image.fromarray(np.dstack([rgb, np.full((40, 50), 128, np.uint8)])).save(folder / "rgba.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.png")
    Image.fromarray((rng.integers(0, 65536, (40, 50))).astype(np.uint16)).save(folder / "sixteen.png")
    Image.fromarray(rgb[:1, :1]).save(folder / "one.png")
    Image.fromarray(rng.integers(0, 256, (1200, 1600, 3), dtype=np.uint8)).save(folder / "large.jpg")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    (folder / "fake.jpg").write_text("not a jpeg either")
    (folder / "sub").mkdir()
    Image.fromarray(rgb).save(folder / "sub" / "nested.png")
    return folder


def test_every_mode_becomes_3x32x32_uint8(images):
    for name in [
        "a.png",
        "b.jpg",
        "c.bmp",
        "d.webp",
        "grey.png",
        "rgba.png",
        "palette.png",
        "sixteen.png",
        "one.png",
        "large.jpg",
    ]:
        x = load_image(images / name)
        assert x.shape == (3, 32, 32) and x.dtype == torch.uint8, name


def test_conversions_keep_content():
    grey = Image.fromarray(np.full((8, 8), 200, np.uint8))
    assert load_image_from(grey).unique().tolist() == [200]
    sixteen = Image.fromarray(np.full((8, 8), 65535, np.uint16))
    assert load_image_from(sixteen).unique().tolist() == [255]  # scaled, not clipped to 65535 % 256
    clear = Image.fromarray(np.zeros((8, 8, 4), np.uint8))
    assert load_image_from(clear).unique().tolist() == [255]  # transparent -> white background


def load_image_from(img: Image.Image) -> torch.Tensor:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.png"
        img.save(path)
        return load_image(path)


def test_folder_walk_finds_images_only(images):
    names = [p.name for p in find_images([images])]
    assert "notes.txt" not in names and "nested.png" in names and "a.png" in names
    assert names == sorted(names, key=lambda n: str(next(images.rglob(n)).relative_to(images)))


def test_bad_files_are_reported_and_others_still_predicted(images):
    paths = [*find_images([images]), images / "missing.png"]
    results = {r.path.name: r for r in predict_files(AlexNet().eval(), paths, CLASSES, topk=3)}
    assert results["empty.png"].error and results["fake.jpg"].error and results["missing.png"].error == "no such file"
    good = results["a.png"].top
    assert len(good) == 3 and good[0][1] >= good[1][1] >= good[2][1]
    assert all(c in CLASSES for c, _ in good) and 0 < sum(p for _, p in good) <= 1 + 1e-6


def test_predictions_match_the_model_on_the_same_pixels(tmp_path):
    model = AlexNet().eval()
    pixels = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    (result,) = predict_files(model, [tmp_path / "x.png"], CLASSES, topk=10)
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() * (2 / 255) - 1
    with torch.no_grad():
        probs = model(x).softmax(1)[0]
    assert [c for c, _ in result.top] == [CLASSES[i] for i in probs.argsort(descending=True).tolist()]
    assert abs(result.top[0][1] - probs.max().item()) < 1e-5


def test_predict_cli(images, tmp_path, capsys):
    save_weights(tmp_path / "model.pt", AlexNet())
    code = main(
        ["predict", str(tmp_path / "model.pt"), str(images / "a.png"), str(images / "empty.png"), "--topk", "2"]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out.count("a.png:") == 1 and "empty.png: error" in captured.err
    assert "1 of 2 files could not be read" in captured.err
    assert main(["predict", str(tmp_path / "model.pt"), str(images / "sub"), "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["path"].endswith("nested.png") and len(entry["top"]) == 3 and entry["error"] is None


def png_declaring(path, width: int, height: int) -> None:
    """A PNG whose header declares width x height but holds a few bytes of pixel data (cheap to write)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" * 1000)  # far less than the image needs: decoding it would fail as truncated
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_decompression_bomb_is_a_per_file_error_and_others_still_predicted(images, recwarn):
    png_declaring(images / "bomb.png", 30000, 30000)
    results = {
        r.path.name: r for r in predict_files(AlexNet().eval(), [images / "bomb.png", images / "a.png"], CLASSES)
    }
    error = results["bomb.png"].error
    assert "30000x30000" in error and "64,000,000" in error and "resize it first" in error
    assert results["a.png"].top is not None
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_image_over_the_limit_is_refused_before_decoding(tmp_path, recwarn):
    pillow_limit = Image.MAX_IMAGE_PIXELS
    png_declaring(tmp_path / "big.png", 12000, 12000)
    image, error = read_image(tmp_path / "big.png")
    assert image is None and error.startswith("image is 12000x12000 pixels")  # not "truncated": never decoded
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]
    assert pillow_limit == Image.MAX_IMAGE_PIXELS  # restored after the check


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "x.png")
    result: list = []
    reader = threading.Thread(target=lambda: result.append(read_image(tmp_path / "x.png")), daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert result == [(None, "not a regular file (a named pipe); pass an image file")]
    assert read_image(tmp_path)[1] == "is a directory"


def test_large_jpeg_is_decoded_at_reduced_scale(tmp_path):
    img = Image.new("RGB", (4000, 3000), (20, 120, 220))
    img.paste((250, 200, 10), (1000, 1000, 3000, 2000))
    img.save(tmp_path / "photo.jpg", quality=80)
    assert decode_rgb(tmp_path / "photo.jpg").size == (500, 375)  # 1/8 scale: 0.19 instead of 12 megapixels
    (result,) = predict_files(AlexNet().eval(), [tmp_path / "photo.jpg"], CLASSES)
    assert result.error is None and len(result.top) == 3


def test_jpeg_declaring_200_megapixels_passes_the_limit_through_draft(tmp_path):
    Image.new("RGB", (16, 16), (90, 90, 90)).save(tmp_path / "small.jpg")
    raw = bytearray((tmp_path / "small.jpg").read_bytes())
    sof = raw.index(b"\xff\xc0")  # baseline frame header: marker, length, precision, height, width
    raw[sof + 5 : sof + 9] = (10000).to_bytes(2, "big") + (20000).to_bytes(2, "big")
    (tmp_path / "huge.jpg").write_bytes(bytes(raw))  # declares 20000x10000, holds the data of 16x16
    assert decode_rgb(tmp_path / "huge.jpg").size == (2500, 1250)
    assert read_image(tmp_path / "huge.jpg")[1] is None
