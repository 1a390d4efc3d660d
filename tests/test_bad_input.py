"""Every bad input through the real CLI: a one-line message naming the value, what is allowed and
the fix; a non-zero exit status (2 for usage errors); no traceback; no partial run directory."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alexnet_cifar.model import AlexNet

from .conftest import write_fake_cifar


def setup_case(tmp: Path, case: str) -> list[str]:
    """Make what `case` needs under `tmp`; return the CLI arguments."""
    data = write_fake_cifar(tmp / "data")
    batches = data / "cifar-10-batches-py"
    run = ["--run-dir", str(tmp / "run")]
    train = ["train", "--data-dir", str(data), *run]
    if case == "missing data folder":
        return ["train", "--no-download", "--data-dir", str(tmp / "nowhere"), *run]
    if case == "empty data folder":
        (tmp / "empty").mkdir()
        return ["train", "--no-download", "--data-dir", str(tmp / "empty"), *run]
    if case == "truncated batch file":
        (batches / "data_batch_4").write_bytes((batches / "data_batch_4").read_bytes()[:5000])
        return train
    if case == "non-CIFAR batch file":
        (batches / "test_batch").write_text("hello, I am a text file\n")
        return train
    if case == "config unknown key":
        (tmp / "c.toml").write_text("learning_rate = 0.1\n")
        return [*train, "--config", str(tmp / "c.toml")]
    if case == "config bad value":
        (tmp / "c.json").write_text('{"epochs": -3}')
        return [*train, "--config", str(tmp / "c.json")]
    if case == "config unreadable":
        return [*train, "--config", str(tmp / "missing.toml")]
    if case == "config not TOML":
        (tmp / "c.toml").write_text("epochs = [[\n")
        return [*train, "--config", str(tmp / "c.toml")]
    if case == "run dir not writable":
        (tmp / "afile").write_text("x")
        return ["train", "--data-dir", str(data), "--run-dir", str(tmp / "afile" / "run")]
    if case.startswith("resume"):
        (tmp / "old").mkdir()
        last = tmp / "old" / "last.pt"
        if case == "resume not a checkpoint":
            last.write_bytes(b"PK\x03\x04 not really")
        elif case == "resume truncated checkpoint":
            torch.save({"model": AlexNet().state_dict()}, last)
            last.write_bytes(last.read_bytes()[:4096])
        elif case == "resume another network":
            torch.save({"model": torch.nn.Linear(3, 4).state_dict()}, last)
        return ["train", "--resume", str(tmp / "old"), "--data-dir", str(data)]
    return [*train, *case.split("=", 1)[1].split()]


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
def test_bad_input(tmp_path, case, code, words):
    args = setup_case(tmp_path, case)
    env = {**os.environ, "CIFAR10_ROOT": ""}
    done = subprocess.run([sys.executable, "-m", "alexnet_cifar", *args], capture_output=True, text=True, env=env,
                          timeout=120)  # fmt: skip
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr and "error" in lines[0]
    for word in words:
        assert word in lines[0]
    assert not (tmp_path / "run").exists(), "a run that could not start left files behind"
