import re

import pytest
import torch

from alexnet_cifar.artifacts.checkpoint import load_checkpoint, save_weights
from alexnet_cifar.errors import UserError
from alexnet_cifar.model import AlexNet


def test_plain_state_dict_is_accepted(tmp_path):
    model = AlexNet()
    save_weights(tmp_path / "model.pt", model)
    state = load_checkpoint(tmp_path / "model.pt")
    torch.testing.assert_close(state["model"]["fc3.bias"], model.fc3.bias.detach())


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b"not a checkpoint"), "not a readable checkpoint"),
        (lambda p: (save_weights(p, AlexNet()), p.write_bytes(p.read_bytes()[:1000])), "not a readable checkpoint"),
        (lambda p: torch.save({"weight": torch.zeros(3)}, p), "another network"),
        (lambda p: None, "does not exist"),
    ],
)
def test_bad_checkpoints(tmp_path, make, message):
    path = tmp_path / "x.pt"
    make(path)
    with pytest.raises(UserError, match=message):
        load_checkpoint(path)


@pytest.fixture(scope="module")
def ema_checkpoint(tmp_path_factory):
    """A training checkpoint of a run that keeps a moving average (last.pt after one epoch)."""
    from .conftest import tiny_fit

    _, run = tiny_fit(tmp_path_factory.mktemp("ema"), epochs=1, ema=0.9)
    return torch.load(run.last, weights_only=True)


def nan_in(weights: dict) -> dict:
    return {**weights, "fc3.bias": torch.full((10,), float("nan"))}


def set_entry(state: dict, entry: str, value: object) -> dict:
    """A copy of `state` (deep along `entry`, "a/b/c") with that entry set to `value`, or changed by it."""
    *parents, last = entry.split("/")
    state = dict(state)
    target = state
    for key in parents:
        target[key] = dict(target[key])
        target = target[key]
    target[last] = value(target[last]) if callable(value) else value  # a function changes what is there
    return state


@pytest.mark.parametrize(
    "entry, value, words",
    [
        ("model", nan_in, "holds NaN or infinite weights in model.fc3.bias"),
        ("ema/model", nan_in, "holds NaN or infinite weights in ema.model.fc3.bias"),
        ("ema/model", {"fc3.bias": torch.zeros(10)}, "holds weights of another network, not the lesson's AlexNet"),
        ("progress/seconds", "soon", "entry progress.seconds must be a finite number, not str"),
        ("progress/best_acc", float("inf"), "entry progress.best_acc must be a finite number, not float"),
        ("data_folder", 5, "entry data_folder must be a folder name or None, not int"),
        ("scaler", [1.0], "entry scaler must be a float16 gradient scaler's state or None, not list"),
        ("progress/world_size", 0, "entry progress.world_size must be a number of processes >= 1 or None"),
        ("progress/rng/torch", torch.zeros(5), "entry progress.rng must be random number generator states"),
        ("progress/rng/numpy", ["MT19937", [0] * 624, 0, 0], "entry progress.rng must be random number generator"),
        ("progress/rng/python", "seed", "entry progress.rng must be random number generator states"),
        ("progress/rng", "seed", "entry progress.rng must be random number generator states"),
        ("progress/meter", {"sums": torch.zeros(4), "samples": 1, "batches": 1, "ranks": 0}, "progress.meter must"),
        ("progress/meter", "half an epoch", "entry progress.meter must be partial sums or None"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_each_damaged_entry_is_named_with_the_file(ema_checkpoint, tmp_path, entry, value, words):
    path = tmp_path / "last.pt"
    torch.save(set_entry(ema_checkpoint, entry, value), path)
    with pytest.raises(UserError) as caught:
        load_checkpoint(path, training=True)
    assert str(caught.value).startswith(f"{path} ") and words in str(caught.value)


def test_the_entries_a_run_may_leave_empty_are_accepted(ema_checkpoint, tmp_path):
    """A run on synthetic data has no data folder; a float32 run no scaler; older files lack both."""
    path = tmp_path / "last.pt"
    state = {**ema_checkpoint, "data_folder": None, "data_fingerprint": None, "scaler": None}
    torch.save(state, path)
    assert load_checkpoint(path, training=True)["data_folder"] is None
    torch.save({k: v for k, v in state.items() if k not in ("data_folder", "data_fingerprint", "scaler")}, path)
    assert "scaler" not in load_checkpoint(path, training=True)


def test_weights_files_keep_their_moving_average_checked_too(ema_checkpoint, tmp_path):
    """Inference (evaluate, predict, export) uses the average when a checkpoint has one."""
    path = tmp_path / "best.pt"
    torch.save(set_entry(ema_checkpoint, "ema/model", nan_in), path)
    with pytest.raises(
        UserError, match=rf"^{re.escape(str(path))} holds NaN or infinite weights in ema\.model\.fc3\.bias"
    ):
        load_checkpoint(path)
    torch.save({**ema_checkpoint, "ema": "averaged"}, path)
    with pytest.raises(UserError, match=f"{path} is damaged: entry ema must be a moving-average state or None"):
        load_checkpoint(path)


@pytest.mark.parametrize("torch_default", ["safe", "unsafe"])
def test_a_checkpoint_that_would_run_code_when_unpickled_is_refused(tmp_path, monkeypatch, torch_default):
    """Checkpoints are untrusted input: only tensors and plain containers are unpickled, never a
    reference to a function (which a full unpickler would call or hand back). Whatever torch's
    default: before 2.6 (which pyproject.toml allows) it was the full unpickler, as this variable
    makes it again."""
    import os

    if torch_default == "unsafe":
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    path = tmp_path / "model.pt"
    torch.save({"model": AlexNet().state_dict(), "hook": os.getcwd}, path)
    with pytest.raises(UserError, match=f"{path} is not a readable checkpoint"):
        load_checkpoint(path)


def nan_slow(state: dict) -> dict:
    slow = [t.clone() for t in state["lookahead"]["slow"]]
    slow[3][0] = float("nan")
    return {"slow": slow}


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda state: None, "entry lookahead.slow must be the model's weights"),
        (lambda state: {"slow": "weights"}, "entry lookahead.slow must be the model's weights"),
        (lambda state: {"slow": [torch.zeros(3)]}, "entry lookahead.slow must be the model's weights"),
        (lambda state: {"slow": [torch.zeros(3)] * 10}, "weights of another network (lookahead.slow.conv1.0.weight)"),
        (nan_slow, "NaN or infinite weights in lookahead.slow.conv2.0.bias"),
    ],
    ids=["none", "not-a-list", "too-few", "wrong-shapes", "nan"],
)
def test_a_damaged_lookahead_state_is_named(tmp_path, damage, words):
    from .conftest import tiny_fit

    _, run = tiny_fit(tmp_path, epochs=1, lookahead_every=2)
    state = torch.load(run.last, weights_only=True)
    assert len(state["lookahead"]["slow"]) == 10  # one per parameter tensor
    state["lookahead"] = damage(state)
    torch.save(state, run.last)
    with pytest.raises(UserError, match=f"^{re.escape(str(run.last))} .*{re.escape(words)}"):  # names the file
        load_checkpoint(run.last, training=True)


def test_a_run_that_keeps_an_average_refuses_a_checkpoint_without_one(ema_checkpoint, tmp_path):
    path = tmp_path / "last.pt"
    torch.save({**ema_checkpoint, "ema": None}, path)
    with pytest.raises(
        UserError, match=f"^{re.escape(str(path))} is damaged: entry ema must be a moving-average state;"
    ):
        load_checkpoint(path, training=True)


def test_a_loaded_model_is_channels_last_unless_asked_otherwise(tmp_path):
    """NHWC: about 1.7x faster convolutions on a CPU; export asks for NCHW."""
    from alexnet_cifar.artifacts.checkpoint import load_model

    save_weights(tmp_path / "model.pt", AlexNet())
    for kwargs, nhwc in (({}, True), ({"channels_last": False}, False)):
        model, _ = load_model(tmp_path / "model.pt", torch.device("cpu"), **kwargs)
        assert model.conv1[0].weight.is_contiguous(memory_format=torch.channels_last) == nhwc
