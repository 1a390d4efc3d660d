import csv
import json

import pytest
import torch

from alexnet_cifar.artifacts.run_dir import RunDir
from alexnet_cifar.config import resolve_config
from alexnet_cifar.data.cifar10 import load_cifar10
from alexnet_cifar.model import AlexNet
from alexnet_cifar.training.loop import fit

from .conftest import tiny_fit


def test_fit_writes_the_run_directory(tmp_path):
    history, run = tiny_fit(tmp_path)
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

    history, run = tiny_fit(tmp_path)
    events = EventAccumulator(str(run.tensorboard_dir))
    events.Reload()
    assert {"train_loss", "valid_acc", "lr", "images_per_s"} <= set(events.Tags()["scalars"])
    accs = [e.value for e in events.Scalars("valid_acc")]
    assert accs == pytest.approx([r.valid_acc for r in history])


def test_fake_data_is_learned(tmp_path):
    history, _ = tiny_fit(tmp_path, epochs=4)
    assert history[-1].train_loss < history[0].train_loss
    assert history[-1].valid_acc > 0.5  # ten distinct colours: far above the 0.1 of chance


def test_same_seed_repeats_exactly_and_another_seed_differs(tmp_path):
    a, _ = tiny_fit(tmp_path, "a")
    b, _ = tiny_fit(tmp_path, "b")
    c, _ = tiny_fit(tmp_path, "c", seed=1)
    key = lambda h: [(r.train_loss, r.valid_loss, r.valid_acc) for r in h]
    assert key(a) == key(b)
    assert key(a) != key(c)


@pytest.mark.slow
def test_real_data_seed_epoch_beats_30_percent(real_root, tmp_path):
    """The core acceptance check: one epoch of the lesson's recipe on the real CIFAR-10 (about 30 s)."""
    data = load_cifar10(real_root)
    seed = fit(resolve_config("seed", {"epochs": 1}), data, RunDir.create(tmp_path / "seed"), show_progress=False)
    assert seed[0].valid_acc > 0.30
