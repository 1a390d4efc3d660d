"""Fault injection: every fault a user or the machine can throw at a command ends in one line (or a
correct result), with no traceback, nothing lost that the tool did not write, and the last good state
intact. The disk-full and read-only cases mount a small tmpfs (root on Linux) and skip elsewhere."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from alexnet_cifar.artifacts.checkpoint import load_checkpoint
from alexnet_cifar.errors import UserError

from .conftest import TINY, assert_one_line_error, run_cli, write_fake_cifar


@pytest.fixture
def small_disk(tmp_path):
    """A folder on its own tmpfs; `resize(mb)` and `read_only()` change it; unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")

    class Disk:
        path = mount

        @staticmethod
        def remount(options: str) -> None:
            subprocess.run(["mount", "-o", f"remount,{options}", str(mount)], check=True)

    yield Disk
    subprocess.run(["umount", "-l", str(mount)], check=False)


def train(capsys, data: Path, run: Path, *extra: str) -> tuple[int, str, str]:
    return run_cli(capsys, "train", "--data-dir", data, "--run-dir", run, *TINY, *extra)


def test_disk_full_during_a_checkpoint_is_one_line_and_the_last_one_survives(fake_root, small_disk, capsys):
    run = small_disk.path / "run"
    # epoch 0 writes best.pt and last.pt (2.3 MB each); epoch 1 has no room for a third file
    code, _, err = train(capsys, fake_root, run, "--epochs", "3")
    assert_one_line_error(code, err, "No space left on device (ENOSPC)", "free some space")
    assert load_checkpoint(run / "last.pt")["progress"]["epoch"] == 1
    assert not [p for p in os.listdir(run) if p.endswith(".tmp")]
    small_disk.remount("size=30m")
    code, _, err = run_cli(capsys, "train", "--resume", run, "--quiet")
    assert code == 0, err
    assert load_checkpoint(run / "last.pt")["progress"]["epoch"] == 3


def test_read_only_run_folder_is_one_line_for_report_and_resume(fake_root, small_disk, capsys):
    run = small_disk.path / "run"
    small_disk.remount("size=30m")
    assert train(capsys, fake_root, run, "--epochs", "1")[0] == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    small_disk.remount("ro")
    code, _, err = run_cli(capsys, "report", run, "--data-dir", fake_root)
    assert_one_line_error(code, err, "Read-only file system (EROFS)", "read-only")
    code, _, err = run_cli(capsys, "train", "--resume", run, "--epochs", "2", "--quiet")
    assert_one_line_error(code, err, "Read-only file system")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_nan_never_reaches_a_checkpoint_and_never_exits_0(fake_root, tmp_path, capsys):
    code, _, err = train(capsys, fake_root, tmp_path / "run", "--lr", "1e6")
    assert_one_line_error(code, err, "NaN or infinite", "smaller --lr")
    assert not {"best.pt", "last.pt", "model.pt"} & set(os.listdir(tmp_path / "run"))


def test_resume_on_other_data_is_refused(fake_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(capsys, fake_root, run, "--epochs", "1")[0] == 0
    config = (run / "config.json").read_bytes()
    other = write_fake_cifar(tmp_path / "other", seed=1)
    code, _, err = run_cli(capsys, "train", "--resume", run, "--epochs", "2", "--data-dir", other)
    assert_one_line_error(code, err, f"trained on other data ({fake_root / 'cifar-10-batches-py'}) than", "start a new")
    assert (run / "config.json").read_bytes() == config
    bigger = write_fake_cifar(tmp_path / "bigger", per_batch=40)
    code, _, err = run_cli(capsys, "train", "--resume", run, "--epochs", "2", "--data-dir", bigger)
    assert_one_line_error(code, err, "trained on other data")
    code, _, err = run_cli(capsys, "train", "--resume", run, "--epochs", "2", "--quiet")  # its own data
    assert code == 0, err
    assert [r["device"] for r in json.loads((run / "config.json").read_text())["resumes"]] == ["cpu"]


def damage(entry: str, value: object):
    def apply(state: dict) -> None:
        keys = entry.split("/")
        target = state
        for key in keys[:-1]:
            target = target[key]
        if value is KeyError:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value

    return apply


@pytest.mark.parametrize(
    "change, words",
    [
        (damage("ema", KeyError), "entry ema is missing"),
        (damage("ema", "zero"), "entry ema must be"),
        (damage("ema", {"model": {}, "updates": 0}), "entry ema must be None (the run keeps no average)"),
        (damage("scheduler", None), "entry scheduler must be"),
        (damage("config", KeyError), "entry config is missing"),
        (damage("config", [1, 2]), "entry config must be"),
        (damage("config", {"recipe": "seed", "lr": "fast"}), "lr = 'fast' is not a number"),
        (damage("config", {"recipe": "seed", "learning_rate": 1}), "unknown config key"),
        (damage("progress", KeyError), "weights only"),
        (damage("progress", 3), "entry progress must be"),
        (damage("progress/epoch", "one"), "entry progress.epoch must be an integer"),
        (damage("progress/epoch", -1), "entry progress.epoch must be an integer"),
        (damage("progress/rng", {}), "entry progress.rng must be"),
        (damage("progress/meter", {"sums": torch.zeros(3)}), "entry progress.meter must be"),
        (damage("optimizer", {"state": {}, "param_groups": []}), "does not fit this run"),
        (damage("model/fc1.0.weight", torch.zeros(3, 3)), "another network"),
        (damage("model/fc1.0.bias", torch.full((384,), float("nan"))), "NaN or infinite weights"),
        (damage("model/fc1.0.bias", torch.zeros(384, dtype=torch.float8_e4m3fn)), "another network"),
        (damage("progress/rng/numpy", ["MT19937", [-1] * 624, 0, 0, 0.0]), "does not fit this run"),
        (damage("progress/rng/python", [3, [2**70] * 625, None]), "does not fit this run"),
        (damage("progress/batch", 10**6), "stopped at batch 1000000"),
        (damage("progress/batch", 7), "stopped at batch 7 of an epoch of 7 batches"),  # one past the last
        (
            damage("progress/meter", {"sums": torch.zeros(4, dtype=torch.complex64), "samples": 1, "batches": 1}),
            "entry progress.meter must be",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_damaged_checkpoint_is_one_line_and_changes_nothing(fake_root, tmp_path, capsys, change, words):
    run = tmp_path / "run"
    assert train(capsys, fake_root, run, "--epochs", "1")[0] == 0
    state = torch.load(run / "last.pt", weights_only=True)
    change(state)
    torch.save(state, run / "last.pt")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, _, err = run_cli(capsys, "train", "--resume", run, "--epochs", "2")
    assert_one_line_error(code, err, words)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_garbled_metrics_is_one_line_for_resume_and_report(fake_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(capsys, fake_root, run, "--epochs", "1")[0] == 0
    (run / "metrics.csv").write_text("this is not,a metrics file\n1,2\n")
    config = (run / "config.json").read_bytes()
    code, _, err = run_cli(capsys, "report", run)
    assert_one_line_error(code, err, "metrics.csv is damaged")
    code, _, err = run_cli(capsys, "train", "--resume", run, "--epochs", "2")
    assert_one_line_error(code, err, "metrics.csv is damaged")
    assert (run / "config.json").read_bytes() == config  # a refused resume records nothing


def test_resume_after_a_cut_metrics_row_repairs_it(fake_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(capsys, fake_root, run, "--epochs", "1")[0] == 0
    text = (run / "metrics.csv").read_text()
    (run / "metrics.csv").write_text(text + "1,2.0,0.3")  # a second row cut by a crash
    code, out, err = run_cli(capsys, "train", "--resume", run, "--epochs", "2")
    assert code == 0, err
    assert "is incomplete and is dropped" in out
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[:2] == text.splitlines() and rows[2].startswith("1,")


def test_data_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    for args in (
        ["train", "--data-dir", tmp_path / "f", "--run-dir", tmp_path / "run"],
        ["download", "--data-dir", tmp_path / "f"],
    ):
        code, _, err = run_cli(capsys, *args)
        assert_one_line_error(code, err, "is a file")
    assert (tmp_path / "f").read_text() == "x" and not (tmp_path / "run").exists()


def test_synthetic_with_a_data_dir_is_a_usage_error(fake_root, tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--synthetic", "--data-dir", fake_root, "--run-dir", tmp_path / "r")
    assert_one_line_error(code, err, "--synthetic", "drop --data-dir", status=2)


def test_interrupted_run_names_a_resume_command_that_works(fake_root, tmp_path, capsys, monkeypatch):
    from alexnet_cifar.training.loop import Session

    monkeypatch.setattr(Session, "should_stop", lambda self: True)  # as if SIGTERM came during batch 0
    code, _, err = train(capsys, fake_root, tmp_path / "run", "--epochs", "2")
    line = assert_one_line_error(code, err, "stopped by SIGTERM", "resume with:")
    command = line.split("resume with: ", 1)[1]
    assert command.endswith(f"train --resume {tmp_path / 'run'}")
    program = command.split(" train --resume")[0]
    assert program == "alexnet-cifar" or program.endswith(" -m alexnet_cifar")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["environment"]["data_folder"].endswith("cifar-10-batches-py")


def test_config_that_is_a_fifo_is_one_line_not_a_hang(fake_root, tmp_path, capsys):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    os.mkfifo(tmp_path / "c.toml")
    code, _, err = train(capsys, fake_root, tmp_path / "run", "--config", tmp_path / "c.toml")
    assert_one_line_error(code, err, "is not a regular file", status=2)


@pytest.mark.beyond_core
def test_report_goes_on_without_a_damaged_config_json(fake_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(capsys, fake_root, run, "--epochs", "1")[0] == 0
    (run / "config.json").write_text("{not json")
    code, out, err = run_cli(capsys, "report", run, "--data-dir", fake_root)
    assert code == 0, err
    assert "config.json is damaged" in out and (run / "report.html").is_file()
    assert (run / "config.json").read_text() == "{not json"


@pytest.mark.beyond_core
def test_export_onto_its_own_checkpoint_is_refused(fake_root, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    run = tmp_path / "run"
    assert train(capsys, fake_root, run, "--epochs", "1")[0] == 0
    before = (run / "model.pt").read_bytes()
    code, _, err = run_cli(capsys, "export", run / "model.pt", "-o", run / "model.pt", "--data-dir", fake_root)
    assert_one_line_error(code, err, "model.pt")
    assert (run / "model.pt").read_bytes() == before


@pytest.fixture
def finished_run(fake_root, tmp_path, capsys) -> Path:
    run = tmp_path / "run"
    assert train(capsys, fake_root, run, "--epochs", "1")[0] == 0
    return run


@pytest.mark.parametrize("name", ["metrics.csv", "train.log", "config.json"])
def test_a_run_file_that_is_a_fifo_or_a_link_is_one_line_not_a_hang(finished_run, tmp_path, capsys, name):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    (finished_run / name).unlink()
    os.mkfifo(finished_run / name)
    code, _, err = run_cli(capsys, "train", "--resume", finished_run, "--epochs", "2", "--quiet")
    assert_one_line_error(code, err, f"{name} is not a regular file")
    (finished_run / name).unlink()
    (tmp_path / "diary.txt").write_text("dear diary")
    (finished_run / name).symlink_to(tmp_path / "diary.txt")
    code, _, err = run_cli(capsys, "train", "--resume", finished_run, "--epochs", "2", "--quiet")
    assert_one_line_error(code, err, f"{name} is not a regular file")
    assert (tmp_path / "diary.txt").read_text() == "dear diary"


@pytest.mark.beyond_core
def test_report_goes_on_past_a_fifo_or_odd_config_json(finished_run, fake_root, capsys, monkeypatch):
    monkeypatch.setenv("CIFAR10_ROOT", str(finished_run / "no-data"))  # the fallback: curves only
    (finished_run / "config.json").write_text('{"config": {}, "environment": {"data_folder": 5}}')
    assert run_cli(capsys, "report", finished_run)[0] == 0
    (finished_run / "config.json").write_text('{"config": {}, "environment": []}')
    assert run_cli(capsys, "report", finished_run)[0] == 0
    (finished_run / "config.json").unlink()
    os.mkfifo(finished_run / "config.json")
    code, out, err = run_cli(capsys, "report", finished_run, "--data-dir", fake_root)
    assert code == 0 and "not a regular file" in out, err


@pytest.mark.beyond_core
def test_report_never_replaces_a_file_it_did_not_write(finished_run, fake_root, capsys):
    assert run_cli(capsys, "report", finished_run, "--data-dir", fake_root)[0] == 0
    assert run_cli(capsys, "report", finished_run, "--data-dir", fake_root)[0] == 0  # its own: replaced
    (finished_run / "curves.png").write_bytes(b"my own plot")
    code, _, err = run_cli(capsys, "report", finished_run, "--data-dir", fake_root)
    assert_one_line_error(code, err, "curves.png was not written by alexnet-cifar report")
    assert (finished_run / "curves.png").read_bytes() == b"my own plot"


def test_onnx_that_is_a_fifo_is_one_line_not_a_hang(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    os.mkfifo(tmp_path / "m.onnx")
    (tmp_path / "x.png").write_bytes(b"")
    code, _, err = run_cli(capsys, "predict", tmp_path / "m.onnx", tmp_path / "x.png")
    assert_one_line_error(code, err, "not a regular file")


def test_recipe_that_is_not_a_name_is_one_line(fake_root, tmp_path, capsys):
    (tmp_path / "c.toml").write_text("recipe = []\n")
    code, _, err = train(capsys, fake_root, tmp_path / "run", "--config", tmp_path / "c.toml")
    assert_one_line_error(code, err, "unknown recipe", status=2)


def test_a_split_without_images_is_one_line(tmp_path, capsys):
    import pickle

    import numpy as np

    root = write_fake_cifar(tmp_path / "data")
    with open(root / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({"labels": np.zeros(0, np.int64), "data": np.zeros((0, 3072), np.uint8)}, f)
    code, _, err = train(capsys, root, tmp_path / "run")
    assert_one_line_error(code, err, "test_batch", "hold no images")
    assert not (tmp_path / "run").exists()


def test_tensorboard_failure_does_not_end_the_run(fake_root, tmp_path, capsys, monkeypatch):
    tensorboard = pytest.importorskip("torch.utils.tensorboard")

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tensorboard.SummaryWriter, "add_scalar", full)
    code, out, err = train(capsys, fake_root, tmp_path / "run", "--epochs", "2")
    assert code == 0, err
    assert (
        out.count("TensorBoard events are no longer written") == 1  # said once, and not tried again
        and len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == 3
    )


def test_ctrl_c_while_starting_is_one_line(capsys, monkeypatch):
    from alexnet_cifar import cli

    def interrupt():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "is_main_process", interrupt)
    code, _, err = run_cli(capsys, "recipes")
    assert_one_line_error(code, err, "interrupted", status=130)


def test_resume_hint_quotes_a_path_with_spaces(fake_root, tmp_path, capsys, monkeypatch):
    from alexnet_cifar.training.loop import Session

    monkeypatch.setattr(Session, "should_stop", lambda self: True)  # as if SIGTERM came during batch 0
    code, _, err = train(capsys, fake_root, tmp_path / "my run", "--epochs", "2")
    assert code == 143 and f"--resume '{tmp_path / 'my run'}'" in err


def test_bench_threads_out_of_range_is_a_usage_error(capsys):
    code, _, err = run_cli(capsys, "bench", "--synthetic", "--threads", "99999999999999999999")
    assert_one_line_error(code, err, "--threads", "1 to 1024", status=2)


def test_a_signal_while_starting_leaves_the_replaced_run_in_place(fake_root, tmp_path, capsys, monkeypatch):
    import signal

    from alexnet_cifar.training import loop

    run = tmp_path / "run"
    assert train(capsys, fake_root, run)[0] == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    real_start = loop.record_start

    def hang_up_while_starting(*args):  # a real SIGHUP (the terminal closed) before the first batch
        os.kill(os.getpid(), signal.SIGHUP)
        real_start(*args)

    monkeypatch.setattr(loop, "record_start", hang_up_while_starting)
    code, _, err = train(capsys, fake_root, run, "--overwrite", "--seed", "1")
    assert_one_line_error(code, err, "stopped by SIGHUP before training started", status=129)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run"]


def test_an_unexpected_error_is_one_line_and_the_replaced_run_comes_back(fake_root, tmp_path, capsys, monkeypatch):
    from alexnet_cifar.training import trainer

    run = tmp_path / "run"
    assert train(capsys, fake_root, run)[0] == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}

    def no_compiler(model, cfg):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

    monkeypatch.setattr(trainer, "compiled", no_compiler)
    code, _, err = train(capsys, fake_root, run, "--overwrite", "--compile")
    assert_one_line_error(code, err, "unexpected RuntimeError: InvalidCxxCompiler", "ALEXNET_CIFAR_DEBUG=1")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_a_broken_pipe_in_one_process_is_no_lost_peer(fake_root, tmp_path, capsys, monkeypatch):
    """Only under torchrun is a lost connection another rank's doing (tests/test_forked_ranks.py)."""
    from alexnet_cifar.training import trainer

    def broken(model, cfg):
        raise RuntimeError("[pair.cc:537] Write error: Broken pipe")

    monkeypatch.setattr(trainer, "compiled", broken)
    code, _, err = train(capsys, fake_root, tmp_path / "run", "--compile")
    assert_one_line_error(code, err, "unexpected RuntimeError: [pair.cc:537] Write error: Broken pipe")


def test_two_runs_never_share_a_folder(tmp_path, monkeypatch):
    from alexnet_cifar.artifacts import run_dir
    from alexnet_cifar.artifacts.run_dir import RunDir, default_run_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_dir.time, "strftime", lambda fmt: "20261129-120000")  # both within one second
    first = default_run_dir("seed")
    RunDir.create(first)
    assert default_run_dir("seed") == first.with_name(first.name + "-2")
    real_mkdir = Path.mkdir

    def taken_meanwhile(self, *args, **kwargs):  # another process creates the run between check and mkdir
        real_mkdir(self, *args, **kwargs)
        (self / run_dir.MARKER).touch()

    monkeypatch.setattr(Path, "mkdir", taken_meanwhile)
    with pytest.raises(UserError, match="was just taken by another run; pass another --run-dir"):
        RunDir.create(tmp_path / "raced")


def test_resume_never_downloads_into_another_folder(finished_run, tmp_path, capsys, monkeypatch):
    from alexnet_cifar.data import source

    fetched = []
    monkeypatch.setattr(source, "download_cifar10", lambda root, log: fetched.append(root))
    (tmp_path / "elsewhere").mkdir()
    code, _, err = run_cli(
        capsys, "train", "--resume", finished_run, "--epochs", "2", "--data-dir", tmp_path / "elsewhere"
    )
    assert_one_line_error(code, err, "CIFAR-10 is not in")
    assert fetched == [] and list((tmp_path / "elsewhere").iterdir()) == []


@pytest.mark.process
def test_a_console_that_cannot_print_a_path_still_gets_lines(finished_run, tmp_path):
    import sys

    (tmp_path / "kätze✓.png").write_bytes(b"not an image")
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    cmd = [sys.executable, "-m", "alexnet_cifar", "predict", finished_run / "model.pt", tmp_path / "kätze✓.png"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr and "Logging error" not in done.stderr
    assert "k\\xe4tze\\u2713.png: error:" in done.stderr


def test_report_of_a_synthetic_run_uses_no_test_set(fake_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CIFAR10_ROOT", str(fake_root))  # a real-looking default that must not be used
    from alexnet_cifar.artifacts.run_dir import RunDir
    from alexnet_cifar.config import resolve_config
    from alexnet_cifar.data.cifar10 import synthetic_cifar10
    from alexnet_cifar.training.loop import fit

    run = tmp_path / "run"  # what `train --synthetic` writes, on a few images instead of 60,000
    cfg = resolve_config("seed", {"epochs": 1, "batch_size": 32, "device": "cpu"})
    fit(cfg, synthetic_cifar10(n_train=64, n_test=32), RunDir.create(run), show_progress=False)
    code, out, err = run_cli(capsys, "report", run)
    assert code == 0 and "trained on synthetic images" in out, err
    assert not (run / "confusion.png").exists() and (run / "curves.png").exists()


def test_onnx_on_another_device_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "x.png").write_bytes(b"")
    code, _, err = run_cli(capsys, "predict", tmp_path / "m.onnx", tmp_path / "x.png", "--device", "cuda")
    assert_one_line_error(code, err, "an ONNX model runs on the CPU", status=2)
