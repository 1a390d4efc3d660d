"""ONNX export: onnxruntime agrees with PyTorch (fake and, when CIFAR10_ROOT is set, real images,
batch sizes 1 and 37), and predict / evaluate run an .onnx file."""

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet_cifar.checkpoint import save_weights
from alexnet_cifar.cli import main
from alexnet_cifar.data import load_cifar10
from alexnet_cifar.errors import UserError
from alexnet_cifar.export import OnnxModel, export_onnx
from alexnet_cifar.loader import DeviceLoader
from alexnet_cifar.model import AlexNet

pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    model = AlexNet().eval()
    save_weights(folder / "model.pt", model)
    export_onnx(folder / "model.pt", folder / "model.onnx")
    return model, folder


def normalised(images: torch.Tensor) -> torch.Tensor:
    return next(iter(DeviceLoader(images, torch.zeros(len(images), dtype=torch.long), len(images))))[0]


@pytest.mark.parametrize("n", [1, 37, 256])
def test_onnxruntime_matches_pytorch_on_fake_images(exported, fake_root, n):
    model, folder = exported
    images = load_cifar10(fake_root).train.images.repeat(3, 1, 1, 1)[:n]
    x = normalised(images)
    with torch.no_grad():
        expected = model(x)
    assert (OnnxModel(folder / "model.onnx")(x) - expected).abs().max() < 1e-4


@pytest.mark.slow
def test_onnxruntime_matches_pytorch_on_real_images(exported, real_root):
    model, folder = exported
    onnx = OnnxModel(folder / "model.onnx")
    images = load_cifar10(real_root).test.images
    for n in (1, 37, 500):
        x = normalised(images[:n])
        with torch.no_grad():
            assert (onnx(x) - model(x)).abs().max() < 1e-4


def test_export_cli_and_onnx_in_predict_and_evaluate(exported, fake_root, tmp_path, capsys):
    _, folder = exported
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "cli.onnx"
    assert main(["export", str(folder / "model.pt"), "-o", str(out), "--data-dir", str(fake_root)]) == 0
    assert "onnxruntime matches PyTorch" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["cli.onnx"]  # no temp or external-data files
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(tmp_path / "x.png")
    predictions = []
    for model_file in (folder / "model.pt", out):
        assert main(["predict", str(model_file), str(tmp_path / "x.png"), "--json"]) == 0
        predictions.append(json.loads(capsys.readouterr().out)[0]["top"])
    assert [p["class"] for p in predictions[0]] == [p["class"] for p in predictions[1]]
    assert predictions[0][0]["probability"] == pytest.approx(predictions[1][0]["probability"], abs=1e-5)
    reports = []
    for model_file in (folder / "model.pt", out):
        assert main(["evaluate", str(model_file), "--data-dir", str(fake_root), "--json"]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    assert reports[0]["confusion"] == reports[1]["confusion"]


def test_missing_extra_names_it(exported, monkeypatch):
    _, folder = exported
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(UserError, match=r"alexnet-cifar\[onnx\]"):
        OnnxModel(folder / "model.onnx")


def test_not_an_onnx_file(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a readable ONNX model"):
        OnnxModel(tmp_path / "bad.onnx")
