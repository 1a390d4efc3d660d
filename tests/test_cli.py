"""The real CLI, end to end in a subprocess, on fake data."""

import argparse
import os
import subprocess
import sys

import pytest
import torch

import alexnet_cifar.cli as command
from alexnet_cifar.cli import main, positive_float, positive_int, shift_pixels, thread_count
from alexnet_cifar.model import AlexNet

from .conftest import TINY, run_cli
from .test_metrics import LESSON_LINE


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "CIFAR10_ROOT": "", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "alexnet_cifar", *args], capture_output=True, text=True, env=full_env, timeout=300
    )


@pytest.mark.process
def test_train_one_epoch_end_to_end(fake_root, tmp_path):
    done = cli(
        "train", "--epochs", "1", "--batch-size", "16", "--data-dir", str(fake_root), "--run-dir", str(tmp_path / "run")
    )
    assert done.returncode == 0, done.stderr
    epoch_lines = [line for line in done.stdout.splitlines() if line.startswith("Epoch")]
    assert len(epoch_lines) == 1 and LESSON_LINE.match(epoch_lines[0])
    AlexNet().load_state_dict(torch.load(tmp_path / "run" / "model.pt", weights_only=True))
    assert "Traceback" not in done.stderr


def test_data_dir_from_environment(fake_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./data here to fall back on
    monkeypatch.setenv("CIFAR10_ROOT", str(fake_root))
    code, out, err = run_cli(capsys, "train", "--no-download", "--run-dir", tmp_path / "run", *TINY)
    assert code == 0, err
    assert f"CIFAR-10 at {fake_root / 'cifar-10-batches-py'}" in out


@pytest.mark.parametrize(
    "args, message, code",
    [
        (["train", "--epochs", "0"], "--epochs: '0' is not allowed; use an integer >= 1", 2),
        (["train", "--epochs", "ten"], "--epochs: 'ten' is not allowed", 2),
        (["train", "--lr", "nan"], "--lr: 'nan' is not allowed; use a finite number > 0", 2),
        (["train", "--lr", "-1"], "--lr: '-1' is not allowed", 2),
        (["train", "--batch-size", "-5"], "--batch-size: '-5' is not allowed", 2),
        (["train", "--device", "tpu"], "invalid choice: 'tpu'", 2),
        (["train", "--recipe", "nope"], "unknown recipe 'nope'", 2),
        (["frobnicate"], "invalid choice: 'frobnicate'", 2),
    ],
)
@pytest.mark.process
def test_bad_arguments_are_one_line_errors(args, message, code):
    done = cli(*args)
    assert done.returncode == code
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "parse, text, expected",
    [
        (positive_int, "1", 1),
        (positive_int, "0", "'0' is not allowed; use an integer >= 1"),
        (positive_int, "1.5", "'1.5' is not allowed; use an integer >= 1"),
        (thread_count, "1", 1),
        (thread_count, "1024", 1024),
        (thread_count, "1025", "'1025' is not allowed; use an integer from 1 to 1024"),
        (thread_count, "0", "'0' is not allowed; use an integer from 1 to 1024"),
        (positive_float, "0.05", 0.05),
        (positive_float, "inf", "'inf' is not allowed; use a finite number > 0"),
        (positive_float, "0", "'0' is not allowed; use a finite number > 0"),
        (shift_pixels, "0", 0),
        (shift_pixels, "8", 8),
        (shift_pixels, "9", "'9' is not allowed; use an integer from 0 to 8 (pixels)"),
        (shift_pixels, "-1", "'-1' is not allowed; use an integer from 0 to 8 (pixels)"),
    ],
)
def test_number_flags_take_their_range_and_name_it_otherwise(parse, text, expected):
    if isinstance(expected, str):
        with pytest.raises(argparse.ArgumentTypeError) as refused:
            parse(text)
        assert str(refused.value) == expected
    else:
        assert parse(text) == expected and type(parse(text)) is type(expected)


def test_missing_data_with_no_download(tmp_path, capsys):
    assert (
        main(["train", "--no-download", "--data-dir", str(tmp_path / "empty"), "--run-dir", str(tmp_path / "r")]) == 1
    )
    err = capsys.readouterr().err
    assert "CIFAR-10 is not in" in err and "alexnet-cifar download" in err
    assert not (tmp_path / "r").exists()  # nothing written for a run that could not start


def test_corrupt_data_is_one_line_error(fake_root, tmp_path, capsys):
    (fake_root / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x04garbage")
    assert main(["train", "--data-dir", str(fake_root), "--run-dir", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip()
    assert "test_batch" in err and len(err.splitlines()) == 1


def test_bad_config_file_key(fake_root, tmp_path, capsys):
    (tmp_path / "c.toml").write_text("epochz = 3\n")
    assert main(["train", "--config", str(tmp_path / "c.toml"), "--data-dir", str(fake_root)]) == 2
    assert "unknown config key 'epochz'" in capsys.readouterr().err


def test_config_file_and_flags(fake_root, tmp_path, capsys):
    (tmp_path / "c.json").write_text('{"epochs": 3, "batch_size": 50}')
    code = main(
        [
            "train",
            "--config",
            str(tmp_path / "c.json"),
            "--epochs",
            "1",
            "--data-dir",
            str(fake_root),
            "--run-dir",
            str(tmp_path / "r"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("Epoch ") for line in out.splitlines()) == 1
    assert '"batch_size": 50' in (tmp_path / "r" / "config.json").read_text()


@pytest.mark.process
def test_help_shows_defaults():
    done = cli("train", "--help")
    assert done.returncode == 0 and "(default: 20)" in done.stdout and "(default: 0.1)" in done.stdout


def test_every_help_page_prints(capsys):
    """argparse formats help strings with %: one stray percent sign breaks --help for every command."""
    from alexnet_cifar.cli import get_args_parser

    commands = get_args_parser()._subparsers._group_actions[0].choices
    for args in (["--help"], *([name, "--help"] for name in commands)):
        with pytest.raises(SystemExit) as done:
            main(args)
        assert done.value.code == 0, args
    out = capsys.readouterr().out
    assert all(name in out for name in ("inspect", "compare", "serve"))


def test_download_when_present(fake_root, capsys):
    assert main(["download", "--data-dir", str(fake_root)]) == 0
    out = capsys.readouterr().out
    assert "nothing to download" in out and "100 train + 30 test images" in out


@pytest.mark.process
def test_help_answers_without_importing_torch():
    """--help must be instant: torch is imported by the commands that need it, not before parsing."""
    code = "import sys; from alexnet_cifar.cli import main\ntry: main(['train', '--help'])\nexcept SystemExit: pass\n"
    code += "assert 'torch' not in sys.modules, 'torch was imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("world_size", ["1", "2"])
def test_the_command_exits_with_mains_code_and_a_torchrun_worker_skips_teardown(world_size, monkeypatch, capsys):
    """A torchrun worker leaves through os._exit after flushing (gloo's threads can abort a finalizing
    interpreter); a single process exits as usual, through SystemExit."""
    monkeypatch.setenv("WORLD_SIZE", world_size)
    monkeypatch.setattr(command, "main", lambda: print("said before leaving", end="") or 3)
    exits: list[int] = []

    def fake_exit(code: int):
        exits.append(code)
        raise SystemExit("os._exit")

    monkeypatch.setattr(command.os, "_exit", fake_exit)
    flushed = []
    monkeypatch.setattr(command.logging, "shutdown", lambda: flushed.append(True))
    with pytest.raises(SystemExit) as leave:
        command.run()
    if world_size == "2":
        assert exits == [3] and flushed == [True] and leave.value.code == "os._exit"
    else:
        assert exits == [] and flushed == [] and leave.value.code == 3
    assert capsys.readouterr().out == "said before leaving"
