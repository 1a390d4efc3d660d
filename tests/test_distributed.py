"""Two CPU processes under torchrun (gloo, loopback rendezvous) against one process with the same
global batch: the same weights within float tolerance, identical on both ranks, files from rank 0 only;
torchrun's SIGTERM reaches both, and the resume goes on under torchrun or in one process.
test_forked_ranks.py tests the rest of what two ranks do, forked from the test process (faster, and
visible to mutation testing)."""

import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from alexnet_cifar.cli import main

from .conftest import lesson_numbers, max_difference, run_cli, write_fake_cifar

pytestmark = pytest.mark.process

# a small step keeps float rounding between one and two processes from growing over 120 steps
COMMON = ["--lr", "0.01", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    # 1,920 = 60 global batches of 32: the ranks ask about a stop every 10 batches, so a signal sent
    # as epoch 1 starts has 5 chances to land inside it
    return write_fake_cifar(tmp_path_factory.mktemp("ddp") / "data", per_batch=384, n_test=50)


# two worker processes on this machine; torchrun picks a free port for the rendezvous
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
TRAIN = ["-m", "alexnet_cifar", "train"]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TORCHRUN, *TRAIN, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def two(data_dir, tmp_path_factory) -> tuple[Path, str]:
    """Two processes of batch 16, 2 epochs, never interrupted: (run folder, stdout)."""
    run = tmp_path_factory.mktemp("two") / "run"
    done = torchrun("--data-dir", str(data_dir), "--run-dir", str(run), "--epochs", "2", "--batch-size", "16", *COMMON)
    assert done.returncode == 0, done.stdout + done.stderr
    return run, done.stdout


def test_two_processes_match_one_with_the_global_batch(data_dir, two, tmp_path, capsys):
    args = ["--data-dir", data_dir, "--run-dir", tmp_path / "one", "--epochs", "2", "--batch-size", "32", *COMMON]
    code, one_out, err = run_cli(capsys, "train", *args)  # its --threads 1: conftest restores the count
    assert code == 0, err
    run, out = two
    assert "all 2 ranks hold identical weights: yes" in out
    assert "global batch 32 = 16 per rank x 2 ranks" in out
    assert out.count("Epoch 0.") == 1 and out.count("Epoch 1.") == 1  # rank 0 alone prints
    log = (run / "train.log").read_text()
    assert log.count("Epoch 0.") == 1 and log.count("Epoch 1.") == 1  # and alone writes
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert len((run / "metrics.csv").read_text().splitlines()) == 3
    assert json.loads((run / "config.json").read_text())["environment"]["world_size"] == 2
    assert max_difference(tmp_path / "one", run) < 1e-5
    # the printed metrics cover the whole dataset, so they equal the single process's
    assert lesson_numbers(out) == pytest.approx(lesson_numbers(one_out), abs=2e-6)


def test_sigterm_to_torchrun_stops_every_rank_at_one_batch_and_resumes(data_dir, two, tmp_path):
    """torchrun passes SIGTERM to its workers; the ranks agree on a batch, rank 0 writes the
    checkpoint, all leave the group together, and the resumed run (under torchrun again) ends
    exactly as the unbroken one did."""
    args = ["--data-dir", str(data_dir), "--epochs", "2", "--batch-size", "16", *COMMON]
    proc = subprocess.Popen(
        [*TORCHRUN, *TRAIN, "--run-dir", str(tmp_path / "run"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not (tmp_path / "run" / "last.pt").exists():  # epoch 0 is done
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert "stopped by SIGTERM" in out + err and "terminate called" not in err, out + err
    progress = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["progress"]
    assert (progress["epoch"], progress["batch"]) < (2, 0), "the run finished before the signal"
    assert progress["world_size"] == 2
    shutil.copytree(tmp_path / "run", tmp_path / "elsewhere")  # to resume in one process below
    cmd = [*TORCHRUN, *TRAIN, "--resume", str(tmp_path / "run")]
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert max_difference(two[0], tmp_path / "run") == 0
    # the interrupted epoch's metrics merge the partial sums saved at the signal with the rest
    assert metrics(tmp_path / "run") == pytest.approx(metrics(two[0]), abs=1e-9)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert [r["world_size"] for r in config["resumes"]] == [2]  # the resume, recorded beside the first start

    # the same interrupted run resumed in one process (a machine with one GPU, or none) keeps its
    # global batch of 32 and its schedule: it ends as the two processes did, within float rounding
    assert main(["train", "--resume", str(tmp_path / "elsewhere"), "--quiet"]) == 0
    assert max_difference(two[0], tmp_path / "elsewhere") < 1e-5
    assert metrics(tmp_path / "elsewhere") == pytest.approx(metrics(two[0]), abs=2e-6)
    last = torch.load(tmp_path / "elsewhere" / "last.pt", weights_only=True)
    assert last["scheduler"]["last_epoch"] == 120 and last["progress"]["world_size"] == 2  # 2 x 60 steps


def metrics(run: Path) -> list[float]:
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [float(r[k]) for r in rows for k in ("train_loss", "train_acc", "valid_loss", "valid_acc")]
