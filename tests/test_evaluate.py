import json

import pytest
import torch

from alexnet_cifar.artifacts.checkpoint import save_checkpoint, save_weights
from alexnet_cifar.cli import main
from alexnet_cifar.data.cifar10 import CLASSES, load_cifar10
from alexnet_cifar.data.loader import DeviceLoader
from alexnet_cifar.inference.evaluate import classification_report, evaluate, predict_logits
from alexnet_cifar.model import AlexNet


def brute_force(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    n = len(labels)
    top1 = top5 = 0
    confusion = [[0] * 10 for _ in range(10)]
    loss = 0.0
    for i in range(n):
        row = logits[i].tolist()
        ranked = sorted(range(10), key=lambda c: -row[c])
        top1 += ranked[0] == labels[i]
        top5 += labels[i] in ranked[:5]
        confusion[labels[i]][ranked[0]] += 1
        log_z = torch.logsumexp(logits[i].double(), 0).item()
        loss += log_z - row[labels[i]]
    per_class = [confusion[c][c] / max(1, sum(confusion[c])) for c in range(10)]
    return {"top1": top1 / n, "top5": top5 / n, "loss": loss / n, "confusion": confusion, "per_class": per_class}


def test_report_equals_brute_force():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 10, generator=gen) * 3
    labels = torch.randint(0, 10, (300,), generator=gen)
    labels[:40] = logits[:40].argmax(1)  # some right answers so every count is exercised
    report = classification_report(logits, labels, CLASSES)
    expected = brute_force(logits, labels.tolist())
    assert report.top1 == expected["top1"] and report.top5 == expected["top5"]
    assert report.confusion == expected["confusion"]
    assert report.per_class == expected["per_class"]
    assert abs(report.loss - expected["loss"]) < 1e-5
    assert report.top5 >= report.top1 and sum(map(sum, report.confusion)) == 300


def test_flip_tta_averages_the_logits_of_image_and_mirror(fake_root):
    data = load_cifar10(fake_root)
    model = AlexNet().eval()
    loader = DeviceLoader(data.test.images, data.test.labels, 7)
    plain, labels = predict_logits(model, loader)
    tta, _ = predict_logits(model, loader, tta=True)
    x = torch.cat([x for x, _ in loader])
    with torch.no_grad():
        expected = (model(x) + model(x.flip(3))) / 2
    torch.testing.assert_close(tta, expected)
    assert not torch.allclose(tta, plain)
    assert labels.tolist() == data.test.labels.tolist()


def test_evaluate_cli_json_matches_library(fake_root, tmp_path, capsys):
    model = AlexNet()
    save_weights(tmp_path / "model.pt", model)
    save_checkpoint(tmp_path / "last.pt", {"model": model.state_dict(), "progress": {}})
    outputs = []
    for name in ("model.pt", "last.pt"):
        assert main(["evaluate", str(tmp_path / name), "--data-dir", str(fake_root), "--json", "--device", "cpu"]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    data = load_cifar10(fake_root)
    loader = DeviceLoader(data.test.images, data.test.labels, 256, channels_last=True)
    expected = classification_report(*predict_logits(model.eval(), loader), CLASSES)
    for out in outputs:
        assert out["top1"] == expected.top1 and out["confusion"] == expected.confusion
        assert abs(out["loss"] - expected.loss) < 1e-5 and out["images"] == 30


def test_evaluate_cli_text(fake_root, tmp_path, capsys):
    save_weights(tmp_path / "model.pt", AlexNet())
    assert main(["evaluate", str(tmp_path / "model.pt"), "--data-dir", str(fake_root), "--tta"]) == 0
    out = capsys.readouterr().out
    assert "with flip TTA" in out and "top-5" in out and "confusion matrix" in out and "automobile" in out


def test_evaluate_with_tta_averages_image_and_mirror(fake_root):
    data = load_cifar10(fake_root)
    model = AlexNet().eval()
    loader = DeviceLoader(data.test.images, data.test.labels, 8)
    criterion = torch.nn.CrossEntropyLoss()
    meter = evaluate(model, loader, criterion, tta=True)
    x = torch.cat([x for x, _ in loader])
    with torch.no_grad():
        logits = (model(x) + model(x.flip(3))) / 2
    expected_loss = criterion(logits, data.test.labels).item()
    expected_acc = (logits.argmax(1) == data.test.labels).double().mean().item()
    loss, acc = meter.result()
    assert loss == pytest.approx(expected_loss, rel=1e-5) and acc == pytest.approx(expected_acc)


def test_multi_view_tta_weighs_the_mirror_pair_half_and_each_shifted_pair_a_quarter(fake_root):
    """Against views cut by hand with numpy's reflecting pad: a shift of 2 moves the content up-left
    (and down-right) by 2 pixels."""
    import numpy as np

    data = load_cifar10(fake_root)
    model = AlexNet().eval()
    loader = DeviceLoader(data.test.images, data.test.labels, 7)
    got, _ = predict_logits(model, loader, tta=True, tta_shift=2)
    x = torch.cat([x for x, _ in loader])
    padded = torch.from_numpy(np.pad(x.numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect"))
    up_left, down_right = padded[..., 4:, 4:], padded[..., :32, :32]
    assert torch.equal(up_left[..., :28, :28], x[..., 2:30, 2:30])  # content moved up-left by 2

    def pair(v):
        return (model(v) + model(v.flip(3))) / 2

    with torch.no_grad():
        expected = pair(x) / 2 + pair(up_left) / 4 + pair(down_right) / 4
    torch.testing.assert_close(got, expected)
    flip_only, _ = predict_logits(model, loader, tta=True)
    assert not torch.allclose(got, flip_only)


def test_evaluate_cli_tta_shift_needs_tta(fake_root, tmp_path, capsys):
    from .conftest import assert_one_line_error, run_cli

    save_weights(tmp_path / "model.pt", AlexNet())
    args = ("evaluate", tmp_path / "model.pt", "--data-dir", fake_root, "--tta-shift", "1")
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, "--tta-shift 1 needs --tta")
    code, out, _ = run_cli(capsys, *args, "--tta")
    assert code == 0 and "with flip TTA and 1-pixel shifts" in out
