"""Two ranks forked from this process (gloo on loopback), each running the CLI as torchrun's workers
do. Unlike torchrun's fresh interpreters they run this process's code, so a mutant under test
(benchmarks/mutation.sh) runs in both ranks: these tests are the oracle for the code that only a
process group reaches (the ranks' agreement on a stop, summed metrics, the weights' comparison).
test_distributed.py keeps the launches under torchrun itself."""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from .conftest import lesson_numbers, max_difference, stop_after, write_fake_cifar

# Windows has no fork, and macOS's is unsafe once threads have started (torch's have)
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="forks the test process: Linux only")
COMMON = ["--lr", "0.01", "--device", "cpu", "--threads", "1", "--quiet"]  # as test_distributed.py
RANKS = 2
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    # 1,920 images: 60 global batches of 32, and the ranks agree on a stop every 10 of them
    return write_fake_cifar(tmp_path_factory.mktemp("forked") / "data", per_batch=384, n_test=50)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sigterm_at(question: int) -> Callable[[], None]:
    """For `forked(before=...)`: this rank alone gets SIGTERM at its n-th question (no real signal)."""

    def install() -> None:
        from alexnet_cifar.training import signals

        handlers = stop_after(question)
        signals.StopOnSignal = lambda: handlers

    return install


def at_batch(batch: int, act: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
    """For `forked(before=...)`: this rank's training loss at `batch` (from 0) becomes `act(loss)`."""

    def install() -> None:
        forward, calls = torch.nn.CrossEntropyLoss.forward, [0]

        def patched(self, logits, labels):
            calls[0] += 1
            loss = forward(self, logits, labels)
            return act(loss) if calls[0] == batch + 1 else loss

        torch.nn.CrossEntropyLoss.forward = patched

    return install


def nan_loss_at(batch: int) -> Callable[[], None]:
    return at_batch(batch, lambda loss: loss * float("nan"))


def crash_at(batch: int) -> Callable[[], None]:
    """An unexpected error on this rank at `batch`."""

    def fail(loss: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("a bug on one rank")

    return at_batch(batch, fail)


def rank_main(rank: int, port: int, argv: list[str] | Callable[[], int], where: Path, before) -> None:
    """One rank: torchrun's environment, the CLI (or a callable), its output in rankN.out; exits with
    the status it returns."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # gone with the test's process, even if killed
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(RANKS))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # a forked child must not reuse the parent's thread pool
    if before is not None:
        before()  # in this rank only: it is a fork
    sys.stdout = sys.stderr = (where / f"rank{rank}.out").open("w", buffering=1)
    from alexnet_cifar.cli import main

    try:
        code = argv() if callable(argv) else main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        # mutmut maps tests to the functions they call from hits in the test's process: hand these over
        mutmut_state = sys.modules.get("mutmut.state")
        hits = sorted(mutmut_state.state()._stats) if mutmut_state else []
        (where / f"rank{rank}.hits").write_text(json.dumps(hits))
    sys.exit(code)


def forked(argv: list, where: Path, before: dict[int, Callable[[], None]] | None = None) -> list[tuple[int, str]]:
    """`alexnet-cifar ARGV` on two forked ranks, after `before[rank]()` in a rank that has one:
    [(exit status, output)] by rank. A rank still waiting 30 s after its peer left (as it would for
    ever in a rendezvous or an all-reduce) is killed."""
    context, port = multiprocessing.get_context("fork"), free_port()
    args = argv if callable(argv) else [str(a) for a in argv]
    ranks = [
        context.Process(target=rank_main, args=(r, port, args, where, (before or {}).get(r)), daemon=True)
        for r in range(RANKS)
    ]
    for process in ranks:
        process.start()
    deadline = time.monotonic() + 150  # a pair of these ranks takes 5-20 s
    while any(p.is_alive() for p in ranks) and time.monotonic() < deadline:
        if any(p.exitcode is not None for p in ranks):
            deadline = min(deadline, time.monotonic() + 30)
        time.sleep(0.05)
    for process in ranks:
        if process.is_alive():
            process.kill()
        process.join()
    mutmut_state = sys.modules.get("mutmut.state")
    for hits in where.glob("rank*.hits"):
        if mutmut_state:
            mutmut_state.state()._stats.update(json.loads(hits.read_text()))
        hits.unlink()
    return [(p.exitcode, (where / f"rank{r}.out").read_text()) for r, p in enumerate(ranks)]


@pytest.fixture(scope="module")
def pair(data_dir, tmp_path_factory) -> tuple[Path, list[tuple[int, str]]]:
    """Two forked ranks of batch 16 for 2 epochs, never interrupted; a validation split of 320 leaves
    1,600 training images: 50 global batches of 32."""
    where = tmp_path_factory.mktemp("pair")
    args = ["--data-dir", data_dir, "--run-dir", where / "run", "--epochs", 2, "--batch-size", 16, "--valid-split", 320]
    return where / "run", forked(["train", *args, *COMMON], where)


def test_two_forked_ranks_match_one_process_with_the_global_batch(data_dir, pair, tmp_path, capsys):
    from alexnet_cifar.cli import main

    args = ["--data-dir", data_dir, "--run-dir", tmp_path / "one", "--epochs", 2, "--batch-size", 32]
    assert main([str(a) for a in ["train", *args, "--valid-split", 320, *COMMON]]) == 0  # threads: conftest restores
    one = capsys.readouterr().out
    run, [(code0, out0), (code1, out1)] = pair
    assert (code0, code1) == (0, 0), out0 + out1
    assert out1 == ""  # rank 1 prints nothing; rank 0 tells the story
    assert "training recipe 'seed' on 2 processes on cpu for 2 epochs" in out0
    assert "global batch 32 = 16 per rank x 2 ranks" in out0 and "all 2 ranks hold identical weights: yes" in out0
    # every number is over all images (each rank's sums added): the single process's, within rounding
    assert len(lesson_numbers(out0)) == 2 * 4 + 2 and lesson_numbers(out0) == pytest.approx(
        lesson_numbers(one), abs=2e-6
    )
    assert max_difference(tmp_path / "one", run) < 1e-5
    assert json.loads((run / "test.json").read_text())["images"] == 50
    assert json.loads((run / "config.json").read_text())["environment"]["world_size"] == 2


def test_a_signal_on_one_rank_stops_both_at_one_batch_and_the_resume_ends_as_the_unbroken_pair(
    data_dir, pair, tmp_path
):
    run = tmp_path / "run"
    args = ["--data-dir", data_dir, "--run-dir", run, "--epochs", 2, "--batch-size", 16, "--valid-split", 320]
    # rank 1 asks at start-up, then every 10th batch and at the epoch's end: its 8th question is at
    # epoch 1's 20th batch, where the ranks agree to stop
    stopped = forked(["train", *args, *COMMON], tmp_path, before={1: sigterm_at(8)})
    assert [code for code, _ in stopped] == [143, 143], stopped
    for _, out in stopped:
        assert "stopped by SIGTERM at epoch 1, batch 20; checkpoint" in out.splitlines()[-1], out
    progress = torch.load(run / "last.pt", weights_only=True)["progress"]
    assert (progress["epoch"], progress["batch"], progress["world_size"]) == (1, 20, 2)
    resumed = forked(["train", "--resume", run, "--quiet"], tmp_path)
    assert [code for code, _ in resumed] == [0, 0], resumed
    assert max_difference(pair[0], run) == 0
    # the interrupted epoch's numbers merge the sums saved at the stop (rank 0's, which hold both
    # ranks') with the rest: the unbroken pair's
    assert lesson_numbers(resumed[0][1]) == pytest.approx(lesson_numbers(pair[1][0][1])[4:], abs=1e-9)


def test_a_signal_on_one_rank_during_start_up_stops_both_before_training(data_dir, tmp_path):
    run = tmp_path / "run"
    args = ["--data-dir", data_dir, "--run-dir", run, "--epochs", 1, "--batch-size", 16]
    stopped = forked(["train", *args, *COMMON], tmp_path, before={1: sigterm_at(1)})
    assert [code for code, _ in stopped] == [143, 143], stopped
    for _, out in stopped:
        assert out.splitlines()[-1].endswith("stopped by SIGTERM before training started; nothing saved"), out
    assert not (run / "last.pt").exists()


def test_a_nan_loss_on_one_rank_stops_both_at_the_same_batch(data_dir, tmp_path):
    """Had rank 1 left alone at its own check (every 50 batches: batch 49), rank 0 would wait in the
    next gradient all-reduce. The ranks agree instead: both stop with the one-line error, no checkpoint."""
    run = tmp_path / "run"
    args = ["--data-dir", data_dir, "--run-dir", run, "--epochs", 1, "--batch-size", 16]
    stopped = forked(["train", *args, *COMMON], tmp_path, before={1: nan_loss_at(49)})
    assert [code for code, _ in stopped] != [0, 0] and stopped[0][0] == stopped[1][0], stopped
    said = "alexnet-cifar: error: loss became NaN or infinite at epoch 0, within batches 40-49 (lr 0.01)"
    for _, out in stopped:
        assert out.splitlines()[-1].startswith(said), out
    assert not (run / "last.pt").exists()


def test_a_time_budget_plans_one_number_of_steps_for_both_ranks(data_dir, tmp_path):
    """Each rank measures its own speed and reads its own clock, at start-up and over the run's first
    epoch (60 steps), when the plan is made again; they must still train the same steps, or one
    would wait for the other's gradients for ever."""
    run = tmp_path / "run"
    args = ["--data-dir", data_dir, "--run-dir", run, "--batch-size", 16, "--time-budget", "8s"]
    done = forked(["train", *args, *COMMON], tmp_path)
    assert [code for code, _ in done] == [0, 0], done
    cfg = json.loads((run / "config.json").read_text())["config"]
    assert cfg["steps"] > 0 and cfg["time_budget"] == 8.0
    assert "all 2 ranks hold identical weights: yes" in done[0][1]
    assert torch.load(run / "last.pt", weights_only=False)["progress"]["step"] == cfg["steps"]
    # a first plan of hundreds of steps (a few ms each) is made again after 55-59 of them: a fifth,
    # or the first epoch but its last batch
    fixed = re.search(r"\(timed on this run's steps 16-(\d+): the plan is fixed\)", done[0][1])
    assert (fixed and 55 <= int(fixed[1]) <= 59) or cfg["steps"] < 275, done[0][1]


def test_a_run_started_in_one_process_resumes_on_two_ranks_as_the_pair(data_dir, pair, tmp_path):
    """One process of batch 32, stopped inside epoch 1, resumed on two ranks of 16 each, ends as
    the run that was two ranks throughout (one rank's share of the saved partial sums, not both)."""
    from alexnet_cifar.artifacts.run_dir import RunDir
    from alexnet_cifar.config import resolve_config
    from alexnet_cifar.data.cifar10 import load_cifar10
    from alexnet_cifar.errors import Interrupted
    from alexnet_cifar.training.loop import fit

    overrides = {"epochs": 2, "batch_size": 32, "lr": 0.01, "device": "cpu", "threads": 1, "valid_split": 320}
    run = RunDir.create(tmp_path / "run")
    # questions: 1 at start-up, 49 in epoch 0 (after every batch but the last), then epoch 1's
    with pytest.raises(Interrupted, match="at epoch 1, batch 30;"):
        fit(resolve_config("seed", overrides), load_cifar10(data_dir), run, show_progress=False, stop=stop_after(80))
    resumed = forked(["train", "--resume", run.path, "--quiet"], tmp_path)
    assert [code for code, _ in resumed] == [0, 0], resumed
    assert "the run started on 1 processes: its global batch of 32 is kept (16 per process)" in resumed[0][1]
    assert max_difference(pair[0], run.path) < 1e-5
    assert lesson_numbers(resumed[0][1]) == pytest.approx(lesson_numbers(pair[1][0][1])[4:], abs=2e-6)


def test_through_the_library_rank_0_alone_writes_and_logs(data_dir, tmp_path):
    """A library caller under torchrun sets no logger level: train.log still has each line once."""
    from alexnet_cifar.artifacts.run_dir import RunDir
    from alexnet_cifar.config import resolve_config
    from alexnet_cifar.data.cifar10 import load_cifar10
    from alexnet_cifar.training.loop import fit
    from alexnet_cifar.training.ranks import from_environment

    cfg = resolve_config("seed", {"epochs": 1, "batch_size": 16, "lr": 0.01, "device": "cpu", "threads": 1})

    def train() -> int:
        path = tmp_path / "run"
        run = RunDir.create(path) if from_environment().is_main else RunDir(path)
        fit(cfg, load_cifar10(data_dir), run, show_progress=False)
        return 0

    assert [code for code, _ in forked(train, tmp_path)] == [0, 0]
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count("Epoch 0.") == 1 and log.count("training recipe") == 1


def test_an_unexpected_error_on_one_rank_ends_both_at_once(data_dir, tmp_path):
    """The failing rank leaves the group without waiting for its peer (which is in a gradient
    all-reduce and never comes), so the peer's all-reduce fails too: nobody waits for ever."""
    args = ["--data-dir", data_dir, "--run-dir", tmp_path / "run", "--epochs", 1, "--batch-size", 16]
    (code0, out0), (code1, out1) = forked(["train", *args, *COMMON], tmp_path, before={1: crash_at(5)})
    assert code0 > 0 and code1 > 0, (out0, out1)  # both exited (a killed rank's code is negative)
    assert out1.splitlines()[-1].startswith("alexnet-cifar: error: unexpected RuntimeError: a bug on one rank;")
    last = out0.splitlines()[-1]  # the rank left behind blames no bug of its own
    said = "another process of this torchrun job ended mid-run (the connection to it was lost); its own error says why"
    assert last == f"alexnet-cifar: error: {said}"
