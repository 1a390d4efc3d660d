import csv
import json

import pytest
import torch

from alexnet_cifar.artifacts.run_dir import RunDir
from alexnet_cifar.config import resolve_config
from alexnet_cifar.data.cifar10 import load_cifar10
from alexnet_cifar.device import select_device
from alexnet_cifar.errors import UsageError
from alexnet_cifar.model import AlexNet
from alexnet_cifar.training.loop import fit
from alexnet_cifar.training.trainer import build_optimizer

from .conftest import write_fake_cifar


def run_fit(tmp_path, name="run", **overrides):
    data = load_cifar10(tmp_path / "data") if (tmp_path / "data").exists() else None
    if data is None:
        data = load_cifar10(write_fake_cifar(tmp_path / "data", per_batch=40, n_test=40))
    cfg = resolve_config("seed", {"epochs": 2, "batch_size": 16, "lr": 0.02, "device": "cpu", **overrides})
    run = RunDir.create(tmp_path / name)
    return fit(cfg, data, run), run


def test_fit_writes_the_run_directory(tmp_path):
    history, run = run_fit(tmp_path)
    assert [r.epoch for r in history] == [0, 1]
    rows = list(csv.DictReader(run.metrics.open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert float(rows[1]["valid_acc"]) == pytest.approx(history[1].valid_acc)
    info = json.loads(run.config.read_text())
    assert info["config"]["epochs"] == 2 and info["environment"]["torch"] == torch.__version__
    log_lines = run.log_file.read_text().splitlines()
    assert sum(line.startswith("Epoch ") for line in log_lines) == 2
    AlexNet().load_state_dict(torch.load(run.weights, weights_only=True))
    assert torch.load(run.last, weights_only=True)["progress"]["epoch"] == 2
    assert run.history() == history and RunDir(tmp_path / "none").history() == []


def test_tensorboard_events_hold_the_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    history, run = run_fit(tmp_path)
    events = EventAccumulator(str(run.tensorboard_dir))
    events.Reload()
    assert {"train_loss", "valid_acc", "lr", "images_per_s"} <= set(events.Tags()["scalars"])
    accs = [e.value for e in events.Scalars("valid_acc")]
    assert accs == pytest.approx([r.valid_acc for r in history])


def test_fake_data_is_learned(tmp_path):
    history, _ = run_fit(tmp_path, epochs=4)
    assert history[-1].train_loss < history[0].train_loss
    assert history[-1].valid_acc > 0.5  # ten distinct colours: far above the 0.1 of chance


def test_same_seed_repeats_exactly_and_another_seed_differs(tmp_path):
    a, _ = run_fit(tmp_path, "a")
    b, _ = run_fit(tmp_path, "b")
    c, _ = run_fit(tmp_path, "c", seed=1)
    key = lambda h: [(r.train_loss, r.valid_loss, r.valid_acc) for r in h]
    assert key(a) == key(b)
    assert key(a) != key(c)


def test_weight_decay_skips_biases():
    cfg = resolve_config("seed", {"weight_decay": 5e-4, "momentum": 0.9})
    groups = build_optimizer(cfg, AlexNet()).param_groups
    assert groups[0]["weight_decay"] == 5e-4 and all(p.dim() > 1 for p in groups[0]["params"])
    assert groups[1]["weight_decay"] == 0.0 and all(p.dim() == 1 for p in groups[1]["params"])
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == 10


def test_unavailable_device_is_a_usage_error():
    assert select_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="'cuda' is not available"):
            select_device("cuda")


@pytest.mark.slow
def test_real_data_seed_epoch_beats_30_percent_and_fast_beats_seed(real_root, tmp_path):
    """The core acceptance check, and the fast recipe's first epoch against the lesson's (about 70 s)."""
    data = load_cifar10(real_root)
    seed = fit(resolve_config("seed", {"epochs": 1}), data, RunDir.create(tmp_path / "seed"), show_progress=False)
    fast = fit(resolve_config("fast"), data, RunDir.create(tmp_path / "fast"), show_progress=False)
    assert seed[0].valid_acc > 0.30
    assert fast[0].valid_acc > seed[0].valid_acc


def test_truncate_metrics_drops_epochs_a_resume_trains_again(tmp_path):
    history, run = run_fit(tmp_path)
    before = run.metrics.read_text()
    run.truncate_metrics(2)  # nothing to drop
    assert run.metrics.read_text() == before
    run.truncate_metrics(1)
    assert run.history() == history[:1] and run.metrics.read_text() == "".join(before.splitlines(True)[:2])
