"""Mechanics of the accuracy techniques: lr schedules, the weight average, flip TTA, Nesterov."""

import itertools
import math

import pytest
import torch

from alexnet_cifar.config import resolve_config
from alexnet_cifar.data.cifar10 import load_cifar10
from alexnet_cifar.data.loader import DeviceLoader, Sampling
from alexnet_cifar.errors import UsageError
from alexnet_cifar.inference.evaluate import evaluate
from alexnet_cifar.model import AlexNet
from alexnet_cifar.training.ema import EMA
from alexnet_cifar.training.loop import train_one_epoch
from alexnet_cifar.training.schedule import lr_factor
from alexnet_cifar.training.trainer import build_trainer, peak_lr


def test_linear_schedule_with_warmup_is_a_one_cycle():
    factors = [lr_factor(s, total_steps=100, warmup_steps=10, kind="linear", final=0.0) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)  # warm-up reaches the peak
    assert factors[10] == pytest.approx(1.0) and factors[55] == pytest.approx(0.5)
    assert factors[99] == pytest.approx(1 / 90)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))


def test_cosine_and_constant_and_final_fraction():
    assert lr_factor(0, 100, 0, "cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor(50, 100, 0, "cosine", 0.0) == pytest.approx(0.5)
    assert lr_factor(100, 100, 0, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(75, 100, 0, "cosine", 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.75)))
    assert lr_factor(100, 100, 0, "linear", 0.2) == pytest.approx(0.2)
    assert [lr_factor(s, 100, 0, "constant", 0.0) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
    assert lr_factor(4, 100, 10, "constant", 0.0) == pytest.approx(0.5)


def test_scheduler_steps_once_per_batch(fake_root):
    data = load_cifar10(fake_root)  # 100 train images
    cfg = resolve_config("seed", {"epochs": 2, "batch_size": 10, "lr": 0.1, "schedule": "linear", "device": "cpu"})
    loader = DeviceLoader(data.train.images, data.train.labels, cfg.batch_size, sampling=Sampling(shuffle=True))
    trainer = build_trainer(cfg, torch.device("cpu"), len(loader))
    seen = []
    for _ in range(10):
        seen.append(trainer.optimizer.param_groups[0]["lr"])
        train_one_epoch(trainer, loader, max_batches=1)
    assert seen == pytest.approx([0.1 * (1 - s / 20) for s in range(10)])


def test_ema_update_arithmetic():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EMA(model, decay=0.9)
    values = []
    for target in [3.0, 5.0, 7.0] + [10.0] * 100:
        with torch.no_grad():
            model.weight.fill_(target)
        ema.update(model)
        values.append(ema.model.weight[0, 0].item())
    # first updates use min(0.9, (1+n)/(10+n)): n=1 -> 2/11, n=2 -> 3/12
    d1, d2 = 2 / 11, 3 / 12
    first = d1 * 1.0 + (1 - d1) * 3.0
    assert values[0] == pytest.approx(first)
    assert values[1] == pytest.approx(d2 * first + (1 - d2) * 5.0)
    assert values[-1] == pytest.approx(10.0, abs=0.2) and ema.current_decay() == 0.9
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_ema_is_evaluated_and_saved(fake_root, tmp_path):
    from alexnet_cifar.artifacts.checkpoint import load_model
    from alexnet_cifar.artifacts.run_dir import RunDir
    from alexnet_cifar.training.loop import fit

    cfg = resolve_config("seed", {"epochs": 1, "batch_size": 10, "lr": 0.05, "ema": 0.9, "device": "cpu"})
    run = RunDir.create(tmp_path / "run")
    fit(cfg, load_cifar10(fake_root), run, show_progress=False)
    state = torch.load(run.last, weights_only=True)
    final = torch.load(run.weights, weights_only=True)
    assert all(torch.equal(final[k], state["ema"]["model"][k]) for k in final)
    assert not torch.equal(final["fc3.bias"], state["model"]["fc3.bias"])
    model, _ = load_model(run.last, torch.device("cpu"))
    assert torch.equal(model.fc3.bias, final["fc3.bias"])


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


def test_nesterov_and_lr_scaling():
    cfg = resolve_config("seed", {"momentum": 0.9, "nesterov": True, "batch_size": 256, "lr": 0.01, "scale_lr": True})
    trainer = build_trainer(cfg, torch.device("cpu"), 10)
    group = trainer.optimizer.param_groups[0]
    assert group["nesterov"] and group["momentum"] == 0.9 and peak_lr(cfg) == pytest.approx(0.04)
    with pytest.raises(UsageError, match="nesterov"):
        resolve_config("seed", {"nesterov": True})
    with pytest.raises(UsageError, match="schedule"):
        resolve_config("seed", {"schedule": "exponential"})
    with pytest.raises(UsageError, match="warmup_epochs"):
        resolve_config("seed", {"warmup_epochs": 30})
