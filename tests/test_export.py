"""ONNX export: onnxruntime agrees with PyTorch (fake and, when CIFAR10_ROOT is set, real images,
batch sizes 1 and 37), and predict / evaluate run an .onnx file."""

import json
import os
import shutil
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet_cifar.artifacts.checkpoint import save_weights
from alexnet_cifar.artifacts.onnx_model import OnnxModel
from alexnet_cifar.cli import main
from alexnet_cifar.data.cifar10 import load_cifar10
from alexnet_cifar.data.loader import DeviceLoader
from alexnet_cifar.errors import UserError
from alexnet_cifar.inference import export
from alexnet_cifar.inference.export import TOLERANCE, export_onnx, export_verified
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


@pytest.mark.beyond_core
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


@pytest.mark.beyond_core
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


@pytest.fixture(scope="module")
def linear_onnx(tmp_path_factory):
    """A valid ONNX model of another network: (N, 4) -> (N, 2)."""
    path = tmp_path_factory.mktemp("linear") / "linear.onnx"
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the exporter's own deprecations
        torch.onnx.export(
            torch.nn.Linear(4, 2).eval(),
            (torch.zeros(2, 4),),
            path,
            dynamo=True,
            dynamic_shapes={"input": {0: batch}},
            external_data=False,
            verbose=False,
        )
    return path


def test_output_that_is_the_checkpoint_is_refused(exported, tmp_path, capsys):
    _, folder = exported
    checkpoint = tmp_path / "model.pt"
    shutil.copy(folder / "model.pt", checkpoint)
    before = checkpoint.read_bytes()
    os.link(checkpoint, tmp_path / "hardlink.onnx")
    for out in (checkpoint, tmp_path / "." / "model.pt", tmp_path / "hardlink.onnx"):
        with pytest.raises(UserError, match="is the checkpoint itself; pass another -o"):
            export_verified(checkpoint, out, torch.zeros(1, 3, 32, 32))
    assert main(["export", str(checkpoint), "-o", str(checkpoint)]) == 1
    assert "checkpoint itself" in capsys.readouterr().err
    assert checkpoint.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "hardlink.onnx",
        "model.pt",
    ]


def test_output_that_is_not_an_onnx_model_is_refused(exported, tmp_path):
    _, folder = exported
    (tmp_path / "notes.onnx").write_text("my notes")
    (tmp_path / "empty.onnx").write_bytes(b"")
    for name in ("notes.onnx", "empty.onnx"):
        with pytest.raises(UserError, match=f"{name} exists and is not an ONNX model exported by alexnet-cifar; pass"):
            export_verified(folder / "model.pt", tmp_path / name, torch.zeros(1, 3, 32, 32))
    with pytest.raises(UserError, match="is a folder"):
        export_onnx(folder / "model.pt", tmp_path)
    assert (tmp_path / "notes.onnx").read_text() == "my notes" and (tmp_path / "empty.onnx").read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.onnx", "notes.onnx"]


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.beyond_core
def test_existing_onnx_model_is_replaced_once_verified(exported, linear_onnx, fake_root, tmp_path):
    model, folder = exported
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "model.onnx"
    shutil.copy(linear_onnx, out)  # another program's model: the user's, never replaced
    x = normalised(load_cifar10(fake_root).test.images[:8])
    with pytest.raises(UserError, match="not an ONNX model exported by alexnet-cifar"):
        export_verified(folder / "model.pt", out, x)
    assert out.read_bytes() == linear_onnx.read_bytes()
    out.unlink()
    export_onnx(folder / "model.pt", out)  # one of ours: replaced once the new one is verified
    assert export_verified(folder / "model.pt", out, x) <= TOLERANCE
    assert out.stat().st_mode & 0o777 == 0o666 & ~current_umask()  # the usual mode, not mkstemp's 0600
    with torch.no_grad():
        assert (OnnxModel(out)(x) - model(x)).abs().max() < 1e-4
    assert [p.name for p in out.parent.iterdir()] == ["model.onnx"]  # no temp files


@pytest.mark.beyond_core
def test_failed_verification_writes_nothing(exported, linear_onnx, tmp_path, monkeypatch):
    _, folder = exported
    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # no difference is small enough
    x = torch.zeros(4, 3, 32, 32)
    with pytest.raises(UserError, match=r"onnxruntime differs from PyTorch by .*; nothing written to"):
        export_verified(folder / "model.pt", tmp_path / "new.onnx", x)
    assert list(tmp_path.iterdir()) == []
    export_onnx(folder / "model.pt", tmp_path / "old.onnx")  # no verification: TOLERANCE plays no part
    before = (tmp_path / "old.onnx").read_bytes()
    with pytest.raises(UserError, match="nothing written"):
        export_verified(folder / "model.pt", tmp_path / "old.onnx", x)
    assert (tmp_path / "old.onnx").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["old.onnx"]  # no temp files


def test_onnx_model_of_another_network_is_refused(linear_onnx):
    with pytest.raises(UserError) as info:
        OnnxModel(linear_onnx)
    message = str(info.value)
    assert "(batch, 4)" in message and "(batch, 2)" in message and "(batch, 3, 32, 32)" in message
    assert "alexnet-cifar export" in message and "\n" not in message


def test_onnxruntime_failure_at_run_is_a_user_error(exported):
    _, folder = exported
    model = OnnxModel(folder / "model.onnx")

    def fail(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code\n  while running Conv node")

    model.session = SimpleNamespace(run=fail)
    with pytest.raises(
        UserError, match="onnxruntime could not run .*FAIL : Non-zero status code while running"
    ) as info:
        model(torch.zeros(2, 3, 32, 32))
    assert "\n" not in str(info.value)
