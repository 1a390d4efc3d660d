"""Two CPU processes under torchrun (gloo, loopback rendezvous) against one process with the same
global batch: the same weights within float tolerance, identical on both ranks, files from rank 0 only."""

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from .conftest import write_fake_cifar

COMMON = ["--lr", "0.05", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_fake_cifar(tmp_path_factory.mktemp("ddp") / "data", per_batch=64, n_test=50)  # 320 = 10 x 32


# two worker processes on this machine; torchrun picks a free port for the rendezvous
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
TRAIN = ["-m", "alexnet_cifar", "train"]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TORCHRUN, *TRAIN, *args], capture_output=True, text=True, timeout=300)


def single(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "alexnet_cifar", "train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def max_difference(a: Path, b: Path) -> float:
    wa, wb = torch.load(a / "model.pt", weights_only=True), torch.load(b / "model.pt", weights_only=True)
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


def test_two_processes_match_one_with_the_global_batch(data_dir, tmp_path):
    two = torchrun(
        "--data-dir", str(data_dir), "--run-dir", str(tmp_path / "two"), "--epochs", "2", "--batch-size", "16", *COMMON
    )
    assert two.returncode == 0, two.stdout + two.stderr
    one = single(
        "--data-dir", str(data_dir), "--run-dir", str(tmp_path / "one"), "--epochs", "2", "--batch-size", "32", *COMMON
    )
    assert one.returncode == 0, one.stderr
    assert "all 2 ranks hold identical weights: yes" in two.stdout
    assert "global batch 32 = 16 per rank x 2 ranks" in two.stdout
    assert two.stdout.count("Epoch 0.") == 1 and two.stdout.count("Epoch 1.") == 1  # rank 0 alone prints
    log = (tmp_path / "two" / "train.log").read_text()
    assert log.count("Epoch 0.") == 1 and log.count("Epoch 1.") == 1  # and alone writes
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert len((tmp_path / "two" / "metrics.csv").read_text().splitlines()) == 3
    assert max_difference(tmp_path / "one", tmp_path / "two") < 1e-5
    # the printed metrics cover the whole dataset, so they equal the single process's
    assert epoch_numbers(two.stdout) == pytest.approx(epoch_numbers(one.stdout), abs=2e-6)


def epoch_numbers(out: str) -> list[float]:
    """Loss and accuracy values of the lesson lines."""
    lines = [line.rsplit(", Time", 1)[0] for line in out.splitlines() if line.startswith("Epoch")]
    return [float(part.split(": ")[1]) for line in lines for part in line.split(", ")]


def test_distributed_resume_extends_like_a_single_run(data_dir, tmp_path):
    first = torchrun(
        "--data-dir", str(data_dir), "--run-dir", str(tmp_path / "two"), "--epochs", "1", "--batch-size", "16", *COMMON
    )
    assert first.returncode == 0, first.stdout + first.stderr
    cmd = [*TORCHRUN, *TRAIN, "--resume", str(tmp_path / "two"), "--epochs", "2"]
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    one = single(
        "--data-dir", str(data_dir), "--run-dir", str(tmp_path / "one"), "--epochs", "2", "--batch-size", "32", *COMMON
    )
    assert one.returncode == 0
    assert max_difference(tmp_path / "one", tmp_path / "two") < 1e-5


def test_sigterm_to_torchrun_stops_every_rank_at_one_batch_and_resumes(tmp_path_factory, tmp_path):
    """torchrun passes SIGTERM to its workers; the ranks agree on a batch, rank 0 writes the
    checkpoint, all leave the group together, and the resumed run ends as an unbroken one does."""
    data = write_fake_cifar(tmp_path_factory.mktemp("ddp-signal") / "data", per_batch=384, n_test=50)  # 60 x 32
    args = ["--data-dir", str(data), "--epochs", "4", *COMMON]
    cmd = [*TORCHRUN, *TRAIN, "--run-dir", str(tmp_path / "two"), "--batch-size", "16", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "two" / "last.pt").exists():  # epoch 0 is done
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert "stopped by SIGTERM" in out + err and "terminate called" not in err, out + err
    progress = torch.load(tmp_path / "two" / "last.pt", weights_only=True)["progress"]
    assert (progress["epoch"], progress["batch"]) < (4, 0), "the run finished before the signal"
    cmd = [*TORCHRUN, *TRAIN, "--resume", str(tmp_path / "two")]
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    whole = torchrun("--run-dir", str(tmp_path / "whole"), "--batch-size", "16", *args)  # never interrupted
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert max_difference(tmp_path / "whole", tmp_path / "two") == 0
    # the interrupted epoch's metrics merge the partial sums saved at the signal with the rest
    assert metrics(tmp_path / "two") == pytest.approx(metrics(tmp_path / "whole"), abs=1e-9)


def metrics(run: Path) -> list[float]:
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [float(r[k]) for r in rows for k in ("train_loss", "train_acc", "valid_loss", "valid_acc")]
