"""Every bad input through the CLI's `main` (in this process: no torch start-up per case): a one-line
message naming the value, what is allowed and the fix; a non-zero exit status (2 for usage errors);
no traceback; no partial run directory. test_cli.py runs the real program in a subprocess."""

from pathlib import Path

import pytest
import torch

from alexnet_cifar.model import AlexNet

from .conftest import assert_one_line_error, run_cli, write_fake_cifar


def cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def old_run(tmp: Path, make_last) -> Path:
    (tmp / "old").mkdir()
    make_last(tmp / "old" / "last.pt")
    return tmp / "old"


def empty(tmp: Path) -> Path:
    (tmp / "empty").mkdir()
    return tmp / "empty"


def truncated_checkpoint(path: Path) -> None:
    torch.save({"model": AlexNet().state_dict()}, path)
    cut(path, 4096)


# Each case: what it needs on disk (given the temp folder and the fake data's batch folder) and its
# arguments after `train --data-dir DATA --run-dir RUN`, or a whole command line of its own.
SETUPS = {
    "truncated batch file": lambda tmp, b: cut(b / "data_batch_4", 5000),
    "non-CIFAR batch file": lambda tmp, b: (b / "test_batch").write_text("hello, I am a text file\n"),
    "config unknown key": lambda tmp, b: (tmp / "c.toml").write_text("learning_rate = 0.1\n"),
    "config bad value": lambda tmp, b: (tmp / "c.json").write_text('{"epochs": -3}'),
    "config not TOML": lambda tmp, b: (tmp / "c.toml").write_text("epochs = [[\n"),
    "run dir not writable": lambda tmp, b: (tmp / "afile").write_text("x"),
}
OWN_COMMANDS = {
    "missing data folder": lambda tmp: [
        "train",
        "--no-download",
        "--data-dir",
        tmp / "nowhere",
        "--run-dir",
        tmp / "run",
    ],
    "empty data folder": lambda tmp: ["train", "--no-download", "--data-dir", empty(tmp), "--run-dir", tmp / "run"],
    "run dir not writable": lambda tmp: ["train", "--data-dir", tmp / "data", "--run-dir", tmp / "afile" / "run"],
    "resume not a checkpoint": lambda tmp: ["train", "--resume", old_run(tmp, lambda p: p.write_bytes(b"PK\x03\x04"))],
    "resume truncated checkpoint": lambda tmp: ["train", "--resume", old_run(tmp, truncated_checkpoint)],
    "resume another network": lambda tmp: [
        "train",
        "--resume",
        old_run(tmp, lambda p: torch.save({"model": torch.nn.Linear(3, 4).state_dict()}, p)),
    ],
}
EXTRA_ARGS = {
    "config unknown key": lambda tmp: ["--config", tmp / "c.toml"],
    "config bad value": lambda tmp: ["--config", tmp / "c.json"],
    "config unreadable": lambda tmp: ["--config", tmp / "missing.toml"],
    "config not TOML": lambda tmp: ["--config", tmp / "c.toml"],
}


def setup_case(tmp: Path, case: str) -> list:
    """Make what `case` needs under `tmp`; return the CLI arguments."""
    data = write_fake_cifar(tmp / "data")
    SETUPS.get(case, lambda tmp, b: None)(tmp, data / "cifar-10-batches-py")
    if case in OWN_COMMANDS:
        return OWN_COMMANDS[case](tmp)
    flags = case.split("=", 1)[1].split() if case.startswith("flags=") else []
    extra = EXTRA_ARGS[case](tmp) if case in EXTRA_ARGS else flags
    return ["train", "--data-dir", data, "--run-dir", tmp / "run", *extra]


CASES = [
    # (case, exit status, words the message must hold)
    ("missing data folder", 1, ["CIFAR-10 is not in", "alexnet-cifar download"]),
    ("empty data folder", 1, ["CIFAR-10 is not in", "drop --no-download"]),
    ("truncated batch file", 1, ["data_batch_4 is truncated", "download"]),
    ("non-CIFAR batch file", 1, ["test_batch is corrupt", "download"]),
    ("flags=--epochs 0", 2, ["--epochs: '0' is not allowed", "integer >= 1"]),
    ("flags=--epochs -2", 2, ["--epochs: '-2' is not allowed"]),
    ("flags=--epochs nan", 2, ["--epochs: 'nan' is not allowed"]),
    ("flags=--epochs lots", 2, ["--epochs: 'lots' is not allowed"]),
    ("flags=--batch-size 0", 2, ["--batch-size: '0' is not allowed"]),
    ("flags=--batch-size -64", 2, ["--batch-size: '-64' is not allowed"]),
    ("flags=--batch-size 1.5", 2, ["--batch-size: '1.5' is not allowed"]),
    ("flags=--lr 0", 2, ["--lr: '0' is not allowed", "finite number > 0"]),
    ("flags=--lr -0.1", 2, ["--lr: '-0.1' is not allowed"]),
    ("flags=--lr nan", 2, ["--lr: 'nan' is not allowed"]),
    ("flags=--lr inf", 2, ["--lr: 'inf' is not allowed"]),
    ("flags=--lr fast", 2, ["--lr: 'fast' is not allowed"]),
    ("flags=--recipe turbo", 2, ["unknown recipe 'turbo'", "seed"]),
    ("flags=--device tpu", 2, ["invalid choice: 'tpu'", "auto"]),
    ("flags=--amp maybe", 2, ["invalid choice: 'maybe'", "auto"]),
    ("flags=--seed -1", 2, ["seed = -1 is not allowed"]),
    ("config unknown key", 2, ["unknown config key 'learning_rate'", "known keys"]),
    ("config bad value", 2, ["epochs = -3 is not allowed", "integer >= 1"]),
    ("config unreadable", 2, ["cannot read config file", "missing.toml"]),
    ("config not TOML", 2, ["is not valid toml"]),
    ("run dir not writable", 1, ["cannot write run directory", "--run-dir"]),
    ("resume not a checkpoint", 1, ["not a readable checkpoint"]),
    ("resume truncated checkpoint", 1, ["not a readable checkpoint"]),
    ("resume another network", 1, ["another network"]),
]
if not torch.cuda.is_available():
    CASES.append(("flags=--device cuda", 2, ["device 'cuda' is not available", "--device auto"]))


@pytest.mark.parametrize("case, code, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, capsys, monkeypatch, case, code, words):
    monkeypatch.setenv("CIFAR10_ROOT", "")
    args = setup_case(tmp_path, case)
    status, _, err = run_cli(capsys, *args)
    line = assert_one_line_error(status, err, *words, status=code)
    assert "error" in line
    assert not (tmp_path / "run").exists(), "a run that could not start left files behind"
