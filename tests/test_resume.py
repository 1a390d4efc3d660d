"""Runs that survive: exact resume after SIGKILL or SIGINT, finished runs, refused config changes,
the NaN guard and deterministic repeats."""

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from alexnet_cifar.artifacts.run_dir import RunDir
from alexnet_cifar.config import resolve_config
from alexnet_cifar.data.cifar10 import data_fingerprint, load_cifar10, synthetic_cifar10
from alexnet_cifar.errors import NonFiniteLoss, UsageError, UserError
from alexnet_cifar.training.loop import check_same_data, fit
from alexnet_cifar.training.resume import open_resume

from .conftest import assert_one_line_error, run_cli, tiny_fit, write_fake_cifar

# 640 fake training images in batches of 16: 40 batches, about a second per epoch on one thread.
ARGS = ["--batch-size", "16", "--lr", "0.02", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_fake_cifar(tmp_path_factory.mktemp("fake") / "data", per_batch=128, n_test=100)


def start(data_dir: Path, run: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "alexnet_cifar", "train", "--data-dir", str(data_dir), "--run-dir", str(run)]
    return subprocess.Popen([*cmd, *ARGS, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def train_here(capsys, data_dir: Path, run: Path, *extra: str) -> tuple[int, str, str]:
    """The CLI's train in this process: no start-up cost, the same arguments as `start`."""
    return run_cli(capsys, "train", "--data-dir", data_dir, "--run-dir", run, "--quiet", *ARGS, *extra)


def resume_here(capsys, run: Path, *extra: str) -> tuple[int, str, str]:
    return run_cli(capsys, "train", "--resume", run, "--no-download", "--quiet", *extra)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "model.pt", weights_only=True)


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "weights differ"


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory) -> Path:
    """An uninterrupted 3-epoch run, in this process (the interrupted runs below are subprocesses)."""
    from alexnet_cifar.cli import main

    run = tmp_path_factory.mktemp("ref") / "run"
    cmd = ["train", "--data-dir", str(data_dir), "--run-dir", str(run), "--quiet", *ARGS, "--epochs", "3"]
    threads = torch.get_num_threads()  # --threads 1 is process-wide; module fixtures run outside the autouse one
    assert main(cmd) == 0
    torch.set_num_threads(threads)
    return run


def epochs_in_metrics(run: Path) -> list[int]:
    with open(run / "metrics.csv", newline="") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


@pytest.mark.process
def test_sigkill_mid_epoch_then_resume_gives_identical_weights(data_dir, reference, tmp_path, capsys):
    run = tmp_path / "run"
    proc = start(data_dir, run, "--epochs", "3")
    wait_for(run / "last.pt", proc)  # epoch 0 is done; SIGKILL lands in epoch 1, which leaves no checkpoint
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    code, _, err = resume_here(capsys, run)
    assert code == 0, err
    assert_same_weights(run, reference)
    assert epochs_in_metrics(run) == [0, 1, 2]


@pytest.mark.process
def test_sigint_writes_a_resumable_checkpoint(data_dir, reference, tmp_path, capsys):
    run = tmp_path / "run"
    proc = start(data_dir, run, "--epochs", "3")
    wait_for(run / "last.pt", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"-m alexnet_cifar train --resume {run}" in err and "Traceback" not in err
    progress = torch.load(run / "last.pt", weights_only=True)["progress"]
    assert progress["batch"] > 0 or progress["epoch"] > 1  # stopped inside an epoch, not only at its end
    code, _, err = resume_here(capsys, run)
    assert code == 0, err
    assert_same_weights(run, reference)
    assert epochs_in_metrics(run) == [0, 1, 2]


def test_sigterm_exits_143(data_dir, tmp_path, capsys):
    """A real SIGTERM, sent to this process once epoch 0 is saved (no interpreter to start)."""
    run = tmp_path / "run"

    def send_when_saved() -> None:
        deadline = time.time() + 120
        while not (run / "last.pt").exists() and time.time() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=send_when_saved, daemon=True).start()
    code, _, err = train_here(capsys, data_dir, run, "--epochs", "50")
    assert code == 143 and "stopped by SIGTERM" in err and len(err.strip().splitlines()) == 1, err
    assert torch.load(run / "last.pt", weights_only=True)["progress"]["batch"] > 0  # stopped inside an epoch


def test_finished_run_resumes_to_nothing_and_can_be_extended(data_dir, reference, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_here(capsys, data_dir, run, "--epochs", "2")[0] == 0
    before = (run / "model.pt").read_bytes()
    code, out, err = resume_here(capsys, run)
    assert code == 0 and "nothing to do" in out, err
    assert (run / "model.pt").read_bytes() == before
    code, _, err = resume_here(capsys, run, "--epochs", "3")
    assert code == 0, err
    assert_same_weights(run, reference)


def test_config_change_on_resume_is_refused(reference, capsys):
    code, _, err = resume_here(capsys, reference, "--lr", "0.05")
    assert_one_line_error(code, err, "lr = 0.05, but the run used lr = 0.02", status=2)


def test_another_recipe_on_resume_is_refused(reference, capsys):
    code, _, err = resume_here(capsys, reference, "--recipe", "fast")
    assert_one_line_error(code, err, "recipe = 'fast', but the run used recipe = 'seed'", status=2)


def test_best_checkpoint_holds_the_best_epoch(reference):
    best = torch.load(reference / "best.pt", weights_only=True)
    with open(reference / "metrics.csv", newline="") as f:
        accs = [float(r["valid_acc"]) for r in csv.DictReader(f)]
    assert best["progress"]["best_acc"] == pytest.approx(max(accs))


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
    data = load_cifar10(data_dir)
    cfg = resolve_config("seed", {"epochs": 1, "batch_size": 16, "lr": 0.02, "device": "cpu"})
    run = RunDir.create(tmp_path / "run")
    fit(cfg, data, run)
    good = run.last.read_bytes()
    state = torch.load(run.last, weights_only=True)
    state["model"]["fc3.bias"][3] = float("nan")  # as a diverged step would leave it
    cfg = resolve_config("seed", {"epochs": 2, "batch_size": 16, "lr": 0.02, "device": "cpu"})
    with pytest.raises(NonFiniteLoss, match=r"NaN or infinite at epoch 1, within batches 0-39 \(lr 0.02\)") as info:
        fit(cfg, data, run, resume=state)
    assert "\n" not in str(info.value)
    assert run.last.read_bytes() == good


def test_deterministic_runs_repeat(data_dir, tmp_path, capsys):
    rows = []
    for name in ("a", "b"):
        assert train_here(capsys, data_dir, tmp_path / name, "--epochs", "2", "--deterministic")[0] == 0
        with open(tmp_path / name / "metrics.csv", newline="") as f:
            rows.append(
                [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in csv.DictReader(f)]
            )
    assert rows[0] == rows[1] and len(rows[0]) == 2


def test_checkpoint_holds_everything_resuming_needs(reference):
    state = torch.load(reference / "last.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "ema", "config", "progress"} <= state.keys()
    assert {"torch", "numpy", "python"} <= state["progress"]["rng"].keys()
    assert state["progress"]["epoch"] == 3 and state["progress"]["step"] == 3 * 40
    assert os.listdir(reference) and not [p for p in os.listdir(reference) if p.endswith(".tmp")]


def test_open_resume_allows_only_the_changes_a_resume_may_make(tmp_path):
    tiny_fit(tmp_path, epochs=1)
    resume = open_resume(tmp_path / "run", {})
    assert resume.finished and resume.config.epochs == 1 and resume.data_folder.name == "cifar-10-batches-py"
    longer = open_resume(tmp_path / "run", {"epochs": 3, "threads": 1, "amp": "off"})
    assert not longer.finished and longer.config.epochs == 3 and longer.config.lr == 0.02
    with pytest.raises(UsageError, match="lr = 0.5, but the run used lr = 0.02"):
        open_resume(tmp_path / "run", {"lr": 0.5})
    same = open_resume(tmp_path / "run", {"lr": 0.02, "recipe": "seed", "epochs": 2})  # given, but unchanged
    assert same.config.lr == 0.02 and same.config.epochs == 2
    with pytest.raises(UsageError, match="recipe = 'fast', but the run used recipe = 'seed'"):
        open_resume(tmp_path / "run", {"recipe": "fast"})
    with pytest.raises(UsageError, match="unknown config key 'nope'"):
        open_resume(tmp_path / "run", {"nope": 1})
    with pytest.raises(UsageError, match="epochs"):
        open_resume(tmp_path / "run", {"epochs": 0})


def test_the_fingerprint_of_given_data_never_changes():
    """Checkpoints keep it: a version that hashed otherwise would refuse to resume every earlier run."""
    from alexnet_cifar.data.cifar10 import CIFAR10, Split

    def data(labels: torch.Tensor) -> CIFAR10:
        pixels = lambda n: (torch.arange(n * 3072) % 251).to(torch.uint8).reshape(n, 3, 32, 32)
        split = lambda n, y: Split(images=pixels(n), labels=y)
        return CIFAR10(split(50, labels), split(20, torch.arange(20) % 10), tuple("abcdefghij"), None, False)

    labels = torch.arange(50) % 10
    assert data_fingerprint(data(labels)) == "5f920b66261be866"  # recorded 2026-12-03
    assert data_fingerprint(data(labels.roll(1))) != "5f920b66261be866"  # every label counts


def test_check_same_data_names_both_sides(fake_root, tmp_path):
    run = RunDir.create(tmp_path / "run")
    real, synthetic = load_cifar10(fake_root), synthetic_cifar10(n_train=20, n_test=10)
    check_same_data({"data_fingerprint": data_fingerprint(real)}, real, run)  # the same data
    check_same_data({}, real, run)  # a checkpoint from before fingerprints: nothing to compare
    with pytest.raises(UserError, match=r"other data \(/a/b\) than synthetic data;"):
        check_same_data({"data_fingerprint": "x", "data_folder": "/a/b"}, synthetic, run)
    with pytest.raises(UserError, match=rf"other data \(synthetic data\) than {real.folder};"):
        check_same_data({"data_fingerprint": "x", "data_folder": None}, real, run)
