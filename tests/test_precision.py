"""float16 training with a gradient scaler, checked on the CPU for correctness (CPU float16 is slow:
GPUs without bfloat16, a T4 or a V100, are the ones that run it for speed)."""

import json

import pytest
import torch

from alexnet_cifar.artifacts.checkpoint import load_checkpoint
from alexnet_cifar.artifacts.run_dir import RunDir
from alexnet_cifar.config import resolve_config
from alexnet_cifar.data.cifar10 import load_cifar10
from alexnet_cifar.errors import Interrupted, NonFiniteLoss
from alexnet_cifar.training import trainer as trainer_module
from alexnet_cifar.training.loop import fit

from .conftest import poison_after, stop_after, tiny_fit

HUGE_SCALE = 2.0**24  # overflows these float16 gradients: about 7 steps are skipped until it fits


@pytest.fixture
def huge_scale(monkeypatch):
    """The scaler starts far too high, so that it must skip steps and back off during the run."""
    make = trainer_module.grad_scaler

    def scaler(device):
        made = make(device)
        made.load_state_dict({**made.state_dict(), "scale": HUGE_SCALE})
        return made

    monkeypatch.setattr(trainer_module, "grad_scaler", scaler)


def test_float16_trains_like_float32_with_a_scaler_in_the_checkpoint(tmp_path):
    half, run = tiny_fit(tmp_path, "fp16", epochs=2, amp="fp16")
    full, _ = tiny_fit(tmp_path, "fp32", epochs=2)
    env = json.loads(run.config.read_text())["environment"]
    assert env["autocast"] == "fp16" and env["device_policy"]["grad_scaler"] is True
    assert load_checkpoint(run.last, training=True)["scaler"]["scale"] == 2.0**16  # torch's start, no overflow
    for h, f in zip(half, full, strict=True):  # the same training, rounded differently
        assert h.train_loss == pytest.approx(f.train_loss, rel=0.02) and abs(h.valid_acc - f.valid_acc) <= 0.1
        assert h.train_loss != f.train_loss  # float16 did run
    assert half[-1].train_loss < half[0].train_loss


def test_skipped_scaler_steps_are_not_a_non_finite_loss(tmp_path, huge_scale):
    """Overflowing gradients make the scaler skip the step and halve its scale; the loss is finite,
    so the run goes on, and the schedule counts every batch (skipped or not)."""
    history, run = tiny_fit(tmp_path, epochs=2, amp="fp16")
    state = load_checkpoint(run.last, training=True)
    skipped = round(torch.log2(torch.tensor(HUGE_SCALE / state["scaler"]["scale"])).item())
    assert 3 <= skipped <= 20  # each skip halves the scale; most of the 26 steps are taken
    assert state["scheduler"]["last_epoch"] == state["progress"]["step"] == 2 * 13  # 200 images / 16 = 13
    assert all(torch.isfinite(w).all() for w in state["model"].values())
    assert history[-1].train_loss < history[0].train_loss


def test_a_loss_that_is_non_finite_stops_a_float16_run(tmp_path, monkeypatch):
    """A non-finite loss is divergence whatever the precision: the scaler guards the gradients,
    not the forward pass (whose loss autocast computes in float32)."""
    poison_after(monkeypatch, 5)
    with pytest.raises(NonFiniteLoss, match="loss became NaN or infinite at epoch 0"):
        tiny_fit(tmp_path, epochs=1, amp="fp16")


def test_a_stopped_float16_run_resumes_with_its_scale(tmp_path, fake_root, huge_scale):
    """The scale is state: a resumed run continues with the one it had, so its weights equal an
    unbroken run's (the scale moves during these epochs, so a fresh scaler would differ)."""
    data = load_cifar10(fake_root)
    cfg = resolve_config("seed", {"epochs": 2, "batch_size": 16, "lr": 0.02, "amp": "fp16", "device": "cpu"})
    unbroken = RunDir.create(tmp_path / "unbroken")
    fit(cfg, data, unbroken, show_progress=False)
    run = RunDir.create(tmp_path / "run")
    with pytest.raises(Interrupted):
        fit(cfg, data, run, show_progress=False, stop=stop_after(4))  # inside epoch 0, mid-backoff
    state = load_checkpoint(run.last, training=True)
    assert state["scaler"]["scale"] < HUGE_SCALE
    fit(cfg, data, run, resume=state, show_progress=False)
    a, b = torch.load(unbroken.weights), torch.load(run.weights)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_resume_may_change_the_precision(tmp_path, fake_root):
    """A float16 run resumed where bfloat16 or float32 is used (another device) ignores its scaler
    state; a run without one resumed in float16 starts a scaler as a new run does."""
    from alexnet_cifar.training.resume import resume_config

    data = load_cifar10(fake_root)
    first = resolve_config("seed", {"epochs": 1, "batch_size": 16, "lr": 0.02, "amp": "fp16", "device": "cpu"})
    run = RunDir.create(tmp_path / "run")
    fit(first, data, run, show_progress=False)
    for epochs, amp in ((2, "off"), (3, "fp16"), (4, "bf16")):
        state = load_checkpoint(run.last, training=True)
        cfg = resume_config(state["config"], {"epochs": epochs, "amp": amp})
        history = fit(cfg, data, run, resume=state, show_progress=False)
        assert [r.epoch for r in history] == [epochs - 1]
        assert (load_checkpoint(run.last, training=True)["scaler"] is None) == (amp != "fp16")
