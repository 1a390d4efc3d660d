"""Property-based fault injection: random bytes, truncations and random field values thrown at the
readers of untrusted files (checkpoints, metrics.csv, config files) end in success or one clean
UserError line, never in another exception."""

import io
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alexnet_cifar.artifacts.checkpoint import load_checkpoint
from alexnet_cifar.artifacts.run_dir import RunDir
from alexnet_cifar.config import read_config_file, resolve_config
from alexnet_cifar.errors import UserError
from alexnet_cifar.training.metrics import EpochRecord
from alexnet_cifar.training.trainer import build_trainer, restore

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CFG = resolve_config("seed", {"device": "cpu", "momentum": 0.9, "ema": 0.9})


def clean_error(exc: UserError) -> None:
    assert str(exc) and "\n" not in str(exc)


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    """A real training checkpoint of a few steps (momentum and EMA on, so every entry is filled)."""
    from alexnet_cifar.data.cifar10 import synthetic_cifar10
    from alexnet_cifar.training.loop import fit

    run = RunDir.create(tmp_path_factory.mktemp("ck") / "run")
    data = synthetic_cifar10(n_train=64, n_test=32)
    cfg = resolve_config("seed", {"epochs": 1, "batch_size": 32, "device": "cpu", "momentum": 0.9, "ema": 0.9})
    fit(cfg, data, run, show_progress=False)
    return run.last.read_bytes()


def load_and_restore(path: Path) -> None:
    """What a resume does with a checkpoint before training: read, check, restore."""
    try:
        state = load_checkpoint(path, training=True)
        if "progress" in state:
            cfg = resolve_config(state["config"]["recipe"], state["config"], {"device": "cpu"})
            restore(build_trainer(cfg, torch.device("cpu"), steps_per_epoch=2), state, RunDir(path.parent))
    except UserError as exc:
        clean_error(exc)


@SETTINGS
@given(data=st.binary(max_size=4096))
def test_random_bytes_as_a_checkpoint(tmp_path, data):
    (tmp_path / "x.pt").write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would be a second line on the console
        load_and_restore(tmp_path / "x.pt")


@SETTINGS
@given(cut=st.floats(0, 1, exclude_max=True))
def test_truncated_checkpoint(tmp_path, checkpoint_bytes, cut):
    (tmp_path / "x.pt").write_bytes(checkpoint_bytes[: int(len(checkpoint_bytes) * cut)])
    with pytest.raises(UserError) as info:
        load_checkpoint(tmp_path / "x.pt")
    clean_error(info.value)


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.builds(torch.zeros, st.integers(0, 5)),
)
ENTRIES = [
    "optimizer",
    "scheduler",
    "ema",
    "config",
    "progress",
    "data_folder",
    "data_fingerprint",
    "optimizer/state",
    "optimizer/param_groups",
    "scheduler/last_epoch",
    "ema/updates",
    "ema/model",
    "config/recipe",
    "config/lr",
    "config/epochs",
    "config/batch_size",
    "progress/epoch",
    "progress/batch",
    "progress/step",
    "progress/seconds",
    "progress/best_acc",
    "progress/meter",
    "progress/rng",
    "progress/rng/torch",
    "progress/rng/numpy",
    "progress/rng/python",
    "model/fc3.bias",
]


@SETTINGS
@given(entry=st.sampled_from(ENTRIES), value=VALUES, delete=st.booleans())
def test_random_field_values_in_a_checkpoint(tmp_path, checkpoint_bytes, entry, value, delete):
    state = torch.load(io.BytesIO(checkpoint_bytes), weights_only=True)
    *parents, key = entry.split("/")
    target = state
    for name in parents:
        target = target[name]
    if delete:
        target.pop(key, None)
    else:
        target[key] = value
    torch.save(state, tmp_path / "x.pt")
    load_and_restore(tmp_path / "x.pt")


def metrics_text(n: int) -> str:
    """A valid metrics.csv of `n` epochs, written by the tool itself."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        run = RunDir(Path(folder))
        run.write_metrics([EpochRecord(i, 1.0, 0.5, 1.1, 0.4, 0.1, 2.0, 900.0) for i in range(n)])
        return run.metrics.read_text()


CUT_METRICS = st.builds(lambda text, cut: text[:cut], st.just(metrics_text(4)), st.integers(0, 400))


@SETTINGS
@given(text=st.one_of(st.text(max_size=300), CUT_METRICS))
def test_random_or_cut_metrics(tmp_path, text):
    run = RunDir(tmp_path)
    run.metrics.write_text(text, encoding="utf-8")
    try:
        history = run.history()
    except UserError as exc:
        clean_error(exc)
        return
    assert all(isinstance(r, EpochRecord) for r in history)


@SETTINGS
@given(data=st.binary(max_size=512), suffix=st.sampled_from([".toml", ".json"]))
def test_random_bytes_as_a_config_file(tmp_path, data, suffix):
    path = tmp_path / f"c{suffix}"
    path.write_bytes(data)
    try:
        resolve_config("seed", read_config_file(path))
    except UserError as exc:
        clean_error(exc)


@SETTINGS
@given(values=st.dictionaries(st.sampled_from(["epochs", "lr", "seed", "ema", "schedule", "threads", "bogus"]), VALUES))
def test_random_config_values(values):
    try:
        resolve_config("seed", values)
    except UserError as exc:
        clean_error(exc)
