import json

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet_cifar.checkpoint import save_weights
from alexnet_cifar.cli import main
from alexnet_cifar.data import CLASSES
from alexnet_cifar.model import AlexNet
from alexnet_cifar.predict import find_images, load_image, predict_files


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
    for name in ["a.png", "b.jpg", "c.bmp", "d.webp", "grey.png", "rgba.png", "palette.png", "sixteen.png",
                 "one.png", "large.jpg"]:  # fmt: skip
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
