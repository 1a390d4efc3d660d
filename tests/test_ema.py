"""The moving average of the weights: its arithmetic, and that it is what gets evaluated and saved."""

import pytest
import torch

from alexnet_cifar.training.ema import EMA

from .conftest import tiny_fit


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

    _, run = tiny_fit(tmp_path, data_root=fake_root, epochs=1, batch_size=10, lr=0.05, ema=0.9)
    state = torch.load(run.last, weights_only=True)
    final = torch.load(run.weights, weights_only=True)
    assert all(torch.equal(final[k], state["ema"]["model"][k]) for k in final)
    assert not torch.equal(final["fc3.bias"], state["model"]["fc3.bias"])
    model, _ = load_model(run.last, torch.device("cpu"))
    assert torch.equal(model.fc3.bias, final["fc3.bias"])
