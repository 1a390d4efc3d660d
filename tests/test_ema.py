"""The moving average of the weights: its arithmetic, and that it is what gets evaluated and saved."""

import pytest
import torch

from alexnet_cifar.artifacts.checkpoint import load_checkpoint, load_model
from alexnet_cifar.artifacts.run_dir import RunDir
from alexnet_cifar.config import resolve_config
from alexnet_cifar.data.cifar10 import load_cifar10
from alexnet_cifar.errors import Interrupted
from alexnet_cifar.training.ema import EMA, Lookahead
from alexnet_cifar.training.loop import fit

from .conftest import stop_after, tiny_fit


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
    _, run = tiny_fit(tmp_path, data_root=fake_root, epochs=1, batch_size=10, lr=0.05, ema=0.9)
    state = torch.load(run.last, weights_only=True)
    final = torch.load(run.weights, weights_only=True)
    assert all(torch.equal(final[k], state["ema"]["model"][k]) for k in final)
    assert not torch.equal(final["fc3.bias"], state["model"]["fc3.bias"])
    model, _ = load_model(run.last, torch.device("cpu"))
    assert torch.equal(model.fc3.bias, final["fc3.bias"])


def test_ema_state_round_trip():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.99)
    for _ in range(3):
        ema.update(model)
    again = EMA(torch.nn.Linear(2, 1), decay=0.99)
    again.load_state_dict(ema.state_dict())
    assert again.updates == 3 and again.current_decay() == ema.current_decay()
    assert all(torch.equal(a, b) for a, b in zip(again.model.parameters(), ema.model.parameters(), strict=True))


def test_a_stopped_ema_run_resumes_to_the_unbroken_weights(fake_root, tmp_path):
    """The average (and its warm-up count) and the schedule survive a stop mid-epoch: the resumed
    run ends where an unbroken one does, for the raw weights and the averaged ones."""
    data = load_cifar10(fake_root)
    schedule = {"schedule": "linear", "warmup_epochs": 0.5}
    cfg = resolve_config("seed", {"epochs": 2, "batch_size": 16, "lr": 0.05, "ema": 0.9, "device": "cpu", **schedule})
    fit(cfg, data, RunDir.create(tmp_path / "whole"), show_progress=False)
    run = RunDir.create(tmp_path / "run")
    with pytest.raises(Interrupted):
        fit(cfg, data, run, show_progress=False, stop=stop_after(10))
    fit(cfg, data, run, resume=load_checkpoint(run.last, training=True), show_progress=False)
    whole = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    resumed = torch.load(run.last, weights_only=True)
    assert whole["ema"]["updates"] == resumed["ema"]["updates"] == 14
    assert whole["scheduler"]["last_epoch"] == resumed["scheduler"]["last_epoch"] == 14
    for part in ("model", "ema"):
        a, b = whole[part], resumed[part]
        weights = (a["model"], b["model"]) if part == "ema" else (a, b)
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0]), part


def walk(look: Lookahead, steps: int) -> list[float]:
    """A one-weight model that training moves +1 per step; its weight after each step."""
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    look.slow = [torch.zeros(1, 1)]
    seen = []
    for step in range(1, steps + 1):
        with torch.no_grad():
            model.weight.add_(1.0)
        look.after_step(model, step)
        seen.append(model.weight.item())
    return seen


def test_lookahead_pulls_back_every_k_steps_and_after_the_last_with_a_warmed_up_decay():
    look = Lookahead(torch.nn.Linear(1, 1, bias=False), every=2, decay=0.8, total_steps=5)
    assert look.current_decay(2) == pytest.approx(0.8 * (2 / 5) ** 3)
    # by hand: step 2: d = 0.0512, slow = 0.9488 * 2 = 1.8976; step 4: d = 0.4096, slow = 1.8976 + 0.5904 * 2
    # = 3.0784; step 5, the last (not a multiple of 2): d = 0.8, slow = 3.0784 + 0.2 * 1 = 3.2784
    assert walk(look, 5) == pytest.approx([1.0, 1.8976, 2.8976, 3.0784, 3.2784])
    assert look.slow[0].item() == pytest.approx(3.2784)


def test_lookahead_longer_than_the_run_still_ends_with_one_pull():
    look = Lookahead(torch.nn.Linear(1, 1, bias=False), every=10, decay=0.8, total_steps=3)
    assert walk(look, 3) == pytest.approx([1.0, 2.0, 0.6])  # 0 + 0.2 * (3 - 0)


def test_lookahead_state_of_another_model_is_refused():
    look = Lookahead(torch.nn.Linear(2, 1), every=2, decay=0.8, total_steps=5)  # weight and bias
    with pytest.raises(ValueError):
        look.load_state_dict({"slow": [torch.ones(1, 2)]})  # a model without the bias
    look.load_state_dict({"slow": [torch.ones(1, 2), torch.ones(1)]})
    assert all(torch.equal(t, torch.ones_like(t)) for t in look.slow)


def test_a_lookahead_run_ends_on_its_slow_weights_and_resumes_exactly(tmp_path):
    _, plain = tiny_fit(tmp_path, "plain")
    _, run = tiny_fit(tmp_path, "look", lookahead_every=3)
    last = load_checkpoint(run.last, training=True)
    final = torch.load(run.weights, weights_only=True)
    assert all(torch.equal(final[k], slow) for k, slow in zip(final, last["lookahead"]["slow"], strict=True))
    assert not torch.equal(final["fc3.weight"], torch.load(plain.weights, weights_only=True)["fc3.weight"])
    # stopped part way (not on a multiple of 3), then resumed: the same weights as the unbroken run
    cfg = resolve_config("seed", {"epochs": 2, "batch_size": 16, "lr": 0.02, "device": "cpu", "lookahead_every": 3})
    stopped = RunDir.create(tmp_path / "stopped")
    data = load_cifar10(tmp_path / "data")
    with pytest.raises(Interrupted):
        fit(cfg, data, stopped, show_progress=False, stop=stop_after(17))
    fit(cfg, data, stopped, resume=load_checkpoint(stopped.last, training=True), show_progress=False)
    again = torch.load(stopped.weights, weights_only=True)
    assert all(torch.equal(again[k], final[k]) for k in final)


def test_lookahead_in_a_run_ending_mid_epoch_with_a_moving_average(tmp_path):
    """A run of 20 steps (the second epoch cut at 7 of 13) with k = 3: the trained weights end as the
    slow ones after step 20, and the average of those is what is evaluated and saved."""
    _, run = tiny_fit(tmp_path, steps=20, lookahead_every=3, ema=0.9)
    last = load_checkpoint(run.last, training=True)
    assert last["progress"]["step"] == 20 and last["scheduler"]["last_epoch"] == 20
    trained = last["model"]
    assert all(torch.equal(trained[k], slow) for k, slow in zip(trained, last["lookahead"]["slow"], strict=True))
    saved = torch.load(run.weights, weights_only=True)
    assert all(torch.equal(saved[k], last["ema"]["model"][k]) for k in saved)
    assert not torch.equal(saved["fc3.weight"], trained["fc3.weight"])
