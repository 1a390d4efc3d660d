"""The run directory: everything needed to understand and repeat a run, and nothing overwritten.

config.json   resolved config plus environment (versions, device, threads, command line, git)
metrics.csv   one row per epoch
train.log     every line printed
last.pt       checkpoint after the latest epoch
model.pt      final weights as a plain state_dict
"""

from __future__ import annotations

import csv
import json
import logging
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write
from .errors import UserError
from .metrics import EpochRecord

log = logging.getLogger("alexnet_cifar")


def default_run_dir(recipe: str) -> Path:
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{recipe}"


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.config = path / "config.json"
        self.metrics = path / "metrics.csv"
        self.log_file = path / "train.log"
        self.last = path / "last.pt"
        self.best = path / "best.pt"
        self.weights = path / "model.pt"
        self.tensorboard_dir = path / "tensorboard"
        self._writer = None

    @classmethod
    def create(cls, path: Path, overwrite: bool = False) -> RunDir:
        """A new, empty run directory; an existing non-empty one is an error unless `overwrite`."""
        if path.exists() and not path.is_dir():
            raise UserError(f"run directory {path} is a file; pass another --run-dir")
        if path.is_dir() and any(path.iterdir()):
            if not overwrite:
                raise UserError(
                    f"run directory {path} already exists; pass --overwrite to replace it or another --run-dir"
                )
            shutil.rmtree(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".write-test"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise UserError(f"cannot write run directory {path}: {exc.strerror}; pass a writable --run-dir") from None
        return cls(path)

    @classmethod
    def open_existing(cls, path: Path) -> RunDir:
        """A run directory to resume: it must hold a last.pt checkpoint."""
        run = cls(path)
        if not run.last.is_file():
            what = "does not exist" if not path.exists() else "holds no last.pt checkpoint"
            raise UserError(f"cannot resume {path}: it {what}; pass a run directory written by alexnet-cifar train")
        return run

    def truncate_metrics(self, epochs_done: int) -> None:
        """Drop rows of epochs a resumed run will train again (written after its last checkpoint)."""
        history = self.history()
        kept = [r for r in history if r.epoch < epochs_done]
        if len(kept) == len(history):
            return
        with atomic_write(self.metrics, "w") as f:
            writer = csv.DictWriter(f, fieldnames=[f.name for f in fields(EpochRecord)])
            writer.writeheader()
            writer.writerows(r.to_row() for r in kept)

    def history(self) -> list[EpochRecord]:
        """The epochs recorded in metrics.csv so far (none when there is no file yet)."""
        if not self.metrics.exists():
            return []
        with open(self.metrics, newline="") as f:
            rows = list(csv.DictReader(f))
        return [EpochRecord(**{k: int(v) if k == "epoch" else float(v) for k, v in r.items()}) for r in rows]

    def write_config(self, config: dict[str, Any], device: torch.device, world_size: int = 1) -> None:
        info = {"config": config, "environment": {**environment(device), "world_size": world_size}}
        with atomic_write(self.config, "w") as f:
            json.dump(info, f, indent=2)
            f.write("\n")

    def append_metrics(self, record: EpochRecord) -> None:
        row = record.to_row()
        new = not self.metrics.exists()
        with open(self.metrics, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        self._tensorboard(record)

    def _tensorboard(self, record: EpochRecord) -> None:
        """The same numbers as TensorBoard scalars, when the optional `tensorboard` package is installed."""
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # the [tensorboard] extra is not installed: the CSV is the record
                return
            self._writer = SummaryWriter(log_dir=str(self.tensorboard_dir))
        for key, value in record.to_row().items():
            if key != "epoch":
                self._writer.add_scalar(key, value, record.epoch)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def attach_log(self) -> logging.Handler:
        """Copy every logged line into train.log; the caller removes the handler when done."""
        handler = logging.FileHandler(self.log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        if log.level == logging.NOTSET:  # a library caller that set up no logging still gets train.log
            log.setLevel(logging.INFO)
        return handler


def environment(device: torch.device) -> dict[str, Any]:
    from . import __version__

    return {
        "alexnet_cifar": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": cpu_name(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "command": sys.argv,
        "git_commit": git_commit(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None
