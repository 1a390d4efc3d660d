"""The trainer: what one optimizer step touches, built from a config."""

import pytest
import torch

from alexnet_cifar.config import resolve_config
from alexnet_cifar.errors import UsageError
from alexnet_cifar.model import AlexNet
from alexnet_cifar.training.trainer import build_optimizer, build_trainer, peak_lr


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


def test_weight_decay_skips_biases():
    cfg = resolve_config("seed", {"weight_decay": 5e-4, "momentum": 0.9})
    groups = build_optimizer(cfg, AlexNet()).param_groups
    assert groups[0]["weight_decay"] == 5e-4 and all(p.dim() > 1 for p in groups[0]["params"])
    assert groups[1]["weight_decay"] == 0.0 and all(p.dim() == 1 for p in groups[1]["params"])
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == 10


def test_a_frozen_conv1_is_a_third_group_with_the_same_weight_decay():
    cfg = resolve_config("seed", {"weight_decay": 5e-4, "momentum": 0.9, "whiten_freeze_epochs": 2.0})
    model = AlexNet()
    decay, no_decay, frozen = build_optimizer(cfg, model).param_groups
    assert frozen["params"] == [model.conv1[0].weight] and frozen["weight_decay"] == 5e-4
    assert all(p is not model.conv1[0].weight for p in decay["params"]) and len(decay["params"]) == 4
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 5


def test_a_resume_puts_back_the_global_generators_the_checkpoint_holds(fake_root, tmp_path):
    """numpy's and Python's global generators continue from the checkpoint, whatever the resuming
    process did before (torch's is reseeded by the model's initialisation, so see the next test)."""
    import random

    import numpy as np

    from alexnet_cifar.artifacts.checkpoint import load_checkpoint
    from alexnet_cifar.artifacts.run_dir import RunDir
    from alexnet_cifar.data.cifar10 import load_cifar10
    from alexnet_cifar.errors import Interrupted
    from alexnet_cifar.training.loop import fit

    from .conftest import stop_after

    data, run = load_cifar10(fake_root), RunDir.create(tmp_path / "run")
    cfg = resolve_config("seed", {"epochs": 1, "batch_size": 16, "lr": 0.02})
    with pytest.raises(Interrupted):
        fit(cfg, data, run, show_progress=False, stop=stop_after(3))
    state = load_checkpoint(run.last, training=True)
    saved = state["progress"]["rng"]
    assert "cuda" not in saved  # a GPU count that differs between machines is never saved
    torch.manual_seed(123)  # whatever the process drew before resuming
    np.random.seed(123)
    random.seed(123)
    fit(cfg, data, run, resume=state, show_progress=False)
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    assert [kind, keys.tolist(), pos, has_gauss, cached] == list(saved["numpy"])
    assert random.getstate() == saved["python"]


def test_a_checkpoint_from_eight_gpus_resumes_on_the_cpu(fake_root, tmp_path):
    """Older checkpoints held every visible GPU's generator state (8 on an 8-GPU node), which
    training never used: a resume on a machine with fewer GPUs, or none, ignores them."""
    from alexnet_cifar.artifacts.checkpoint import load_checkpoint
    from alexnet_cifar.artifacts.run_dir import RunDir
    from alexnet_cifar.data.cifar10 import load_cifar10
    from alexnet_cifar.errors import Interrupted
    from alexnet_cifar.training.loop import fit

    from .conftest import stop_after

    data, run = load_cifar10(fake_root), RunDir.create(tmp_path / "run")
    cfg = resolve_config("seed", {"epochs": 1, "batch_size": 16, "lr": 0.02})
    with pytest.raises(Interrupted):
        fit(cfg, data, run, show_progress=False, stop=stop_after(3))
    state = torch.load(run.last, weights_only=True)
    state["progress"]["rng"]["cuda"] = [torch.zeros(16, dtype=torch.uint8)] * 8
    torch.save(state, run.last)
    history = fit(cfg, data, run, resume=load_checkpoint(run.last, training=True), show_progress=False)
    assert [r.epoch for r in history] == [0]


@pytest.mark.parametrize("part", ["ema", "scheduler"])
def test_a_checkpoint_without_a_part_of_this_trainer_does_not_fit(part):
    trainer = build_trainer(resolve_config("seed", {"ema": 0.9, "schedule": "linear"}), torch.device("cpu"), 10)
    state = trainer.state_dict()
    trainer.load_state_dict(state)  # its own state fits
    with pytest.raises((TypeError, AttributeError)):  # restore() makes it one line naming the file
        trainer.load_state_dict({**state, part: None})


def test_weights_finite_looks_at_the_moving_average_too():
    from alexnet_cifar.training.trainer import weights_finite

    trainer = build_trainer(resolve_config("seed", {"ema": 0.9}), torch.device("cpu"), 10)
    assert weights_finite(trainer)
    with torch.no_grad():
        trainer.ema.model.fc3.bias[0] = float("inf")
    assert not weights_finite(trainer)


def test_rng_state_round_trip():
    import random

    import numpy as np

    from alexnet_cifar.training.trainer import rng_state, set_rng_state

    state = rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    set_rng_state(state)
    assert (
        torch.equal(torch.rand(3), first[0]) and (np.random.rand(3) == first[1]).all() and random.random() == first[2]
    )


def test_float16_gets_an_enabled_scaler_on_its_own_device_and_hides_only_the_schedule_warning():
    import warnings

    cpu = torch.device("cpu")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        trainer = build_trainer(resolve_config("seed", {"amp": "fp16", "device": "cpu"}), cpu, steps_per_epoch=10)
        # a skipped first step (the scaler finding its scale) makes LambdaLR warn of a misordered call
        warnings.warn("Detected call of `lr_scheduler.step()` before `optimizer.step()`.", UserWarning, stacklevel=1)
        warnings.warn("any other warning", UserWarning, stacklevel=1)
    assert trainer.scaler is not None and trainer.scaler.is_enabled() and trainer.scaler._device == "cpu"
    assert [str(w.message) for w in seen] == ["any other warning"]
    assert build_trainer(resolve_config("seed", {"device": "cpu"}), cpu, steps_per_epoch=10).scaler is None


def test_a_process_shares_a_global_batch_and_a_short_last_batch_only_bars_one_process_resumed_on_more():
    from alexnet_cifar.errors import UserError
    from alexnet_cifar.training.trainer import rank_batch_size

    assert rank_batch_size(32, 2, 1610, started_on=2) == 16  # begun on two: they drop the short last batch
    assert rank_batch_size(32, 1, 1610, started_on=2) == 32  # and one process goes on the same way
    assert rank_batch_size(32, 2, 1600, started_on=1) == 16  # begun on one, with no short batch
    with pytest.raises(UserError, match="short batch of 10 images, which 2 processes cannot share"):
        rank_batch_size(32, 2, 1610, started_on=1)
    with pytest.raises(UserError, match="global batch of 32 images .* cannot be shared by 3 processes"):
        rank_batch_size(32, 3, 1600, started_on=1)


def test_a_trainer_built_without_a_policy_compiles_when_the_config_asks(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda model: compiled.append(type(model).__name__) or model)
    build_trainer(resolve_config("seed", {"device": "cpu"}), torch.device("cpu"), steps_per_epoch=10)
    assert compiled == []
    build_trainer(resolve_config("seed", {"device": "cpu", "compile": True}), torch.device("cpu"), steps_per_epoch=10)
    assert compiled == ["AlexNet"]  # the step model; one process evaluates with the same one
