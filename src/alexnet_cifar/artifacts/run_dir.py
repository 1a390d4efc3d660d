"""The run directory: everything needed to understand and repeat a run, and nothing lost.

config.json   resolved config plus environment (versions, device, threads, command line, git), and resumes
metrics.csv   one row per epoch
train.log     every line printed
last.pt       checkpoint after the latest epoch; best.pt, the best epoch's
model.pt      final weights as a plain state_dict
kernels.pt    conv1's 64 kernels before training and after each epoch (19 kB each), for `inspect`
test.json     with --valid-split: the test set's loss and accuracy, measured once at the end
tensorboard/  the same numbers as TensorBoard scalars, when tensorboard is installed
report.html   and its PNGs, written by `alexnet-cifar report`; inspect.html and its PNGs, by `inspect`

This class owns every file name of a run and is the only writer of config.json and metrics.csv. It
replaces a folder only if it can prove this tool wrote it (see `replaceable`), and then only once
the new run has written its first checkpoint.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError, file_error
from ..training.metrics import EpochRecord
from .atomic import atomic_write

log = logging.getLogger("alexnet_cifar")

CONFIG, METRICS, LOG, LAST, BEST, WEIGHTS = "config.json", "metrics.csv", "train.log", "last.pt", "best.pt", "model.pt"
KERNELS = "kernels.pt"
TEST = "test.json"  # with a validation split: the test set's numbers, measured once at the end
TENSORBOARD = "tensorboard"
INSPECT_FILES = (
    "inspect.html",
    "kernels.png",
    "kernels_by_epoch.png",
    "feature_maps.png",
    "where_it_looks.png",
    "neighbours.png",
    "feature_map_2d.png",
    "confusions.png",
)
# every file a report or an inspection writes carries REPORT_MARK
REPORT_FILES = ("report.html", "curves.png", "confusion.png", "per_class.png", "most_wrong.png", *INSPECT_FILES)
REPORT_MARK = "alexnet-cifar report"  # in every file a report writes, so it replaces only its own files
MARKER = ".alexnet-cifar-run"  # created exclusively with the folder: one run per folder, even when two start at once
RUN_FILES = frozenset({CONFIG, METRICS, LOG, LAST, BEST, WEIGHTS, KERNELS, TEST, TENSORBOARD, MARKER, *REPORT_FILES})
TEMP_FILE = re.compile(r"^\.(.+)\.\d+\.tmp$")  # atomic_write's temp names, left by a crash
METRIC_FIELDS = tuple(f.name for f in fields(EpochRecord))


def default_run_dir(recipe: str) -> Path:
    """runs/DATE-TIME-RECIPE, with -2, -3, ... when runs start within the same second."""
    base = Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{recipe}"
    return next(p for p in (base, *(base.with_name(f"{base.name}-{i}") for i in range(2, 10_000))) if not p.exists())


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.config = path / CONFIG
        self.metrics = path / METRICS
        self.log_file = path / LOG
        self.last = path / LAST
        self.best = path / BEST
        self.weights = path / WEIGHTS
        self.kernels = path / KERNELS
        self.test_result = path / TEST
        self.tensorboard_dir = path / TENSORBOARD
        self.replaced: Path | None = None  # the old run moved aside by --overwrite, until this one starts
        self._writer = None

    @classmethod
    def create(cls, path: Path, overwrite: bool = False, protect: tuple[Path, ...] = ()) -> RunDir:
        """A new, empty run directory. An existing non-empty one is refused, or with `overwrite`
        moved aside if it is a run of this tool (and not a folder in `protect`): the new run's first
        checkpoint deletes it (`started`), a failure before that puts it back (`abandon`)."""
        if path.exists() and not path.is_dir():
            raise UserError(f"run directory {path} is a file; pass another --run-dir")
        run = cls(path)
        if path.is_dir() and any(path.iterdir()):
            if not overwrite:
                raise UserError(
                    f"run directory {path} already exists; pass --overwrite to replace it or another --run-dir"
                )
            refuse_to_replace(path, protect)
            run.replaced = path.with_name(f".{path.name}.replaced-{os.getpid()}")
            try:
                path.rename(run.replaced)
            except OSError as exc:
                raise file_error(exc, "move aside the old run", path) from None
            log.info(f"moved the old run {path} aside to {run.replaced}: deleted once the new run has started")
        try:
            path.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path / MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY))  # also proves it is writable
        except FileExistsError:
            run.abandon()
            raise UserError(f"run directory {path} was just taken by another run; pass another --run-dir") from None
        except OSError as exc:
            run.abandon()
            raise UserError(f"cannot write run directory {path}: {exc.strerror}; pass a writable --run-dir") from None
        return run

    def started(self) -> None:
        """The new run has written a checkpoint: the run it replaces can go."""
        if self.replaced is None:
            return
        try:
            if self.replaced.is_symlink():  # --run-dir named a link: drop the link, never what it points to
                self.replaced.unlink()
            else:
                shutil.rmtree(self.replaced)
        except FileNotFoundError:  # someone removed it meanwhile
            pass
        except OSError as exc:  # tidying only: the new run goes on, and says what is left
            log.warning(f"the old run moved aside to {self.replaced} is not all removed ({exc.strerror}); delete it")
        self.replaced = None

    def abandon(self) -> None:
        """The new run failed before its first checkpoint: put the replaced run back in its place."""
        if self.replaced is None:
            return
        with contextlib.suppress(OSError):
            if self.path.exists():
                shutil.rmtree(self.path)  # created by this process a moment ago
            self.replaced.rename(self.path)
            log.info(f"the new run did not start; the old run is back in {self.path}")
            self.replaced = None

    @classmethod
    def open_existing(cls, path: Path) -> RunDir:
        """A run directory to resume: it must hold a last.pt checkpoint."""
        run = cls(path)
        if not run.last.is_file():
            what = "does not exist" if not path.exists() else "holds no last.pt checkpoint"
            raise UserError(f"cannot resume {path}: it {what}; pass a run directory written by alexnet-cifar train")
        return run

    # metrics.csv: read tolerantly, always rewritten whole and atomically (it is a few kB)

    def history(self) -> list[EpochRecord]:
        """The epochs recorded in metrics.csv so far (none when there is no file yet). A last row cut
        short by a crash or a full disk is dropped with a notice; damage elsewhere is an error."""
        require_regular(self.metrics)
        try:
            text = self.metrics.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise self._damaged(f"unreadable ({getattr(exc, 'strerror', None) or exc})") from None
        lines = text.splitlines(keepends=True)
        if not lines:
            return []
        if next(csv.reader([lines[0]]), None) != list(METRIC_FIELDS):
            raise self._damaged(f"line 1 is not the header {','.join(METRIC_FIELDS)}")
        records = []
        for number, line in enumerate(lines[1:], start=2):
            record = parse_metrics_row(line)
            if record is None and number == len(lines):  # the last row, cut mid-write
                log.info(f"{self.metrics}: line {number} is incomplete and is dropped (a crash cut it short)")
                break
            if record is None:
                raise self._damaged(f"line {number} is not a row of {len(METRIC_FIELDS)} numbers")
            records.append(record)
        return records

    # test.json: the test set's numbers of a run with a validation split (written at its end)

    def write_test_result(self, result: dict[str, Any]) -> None:
        with atomic_write(self.test_result, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")

    def read_test_result(self) -> dict[str, Any] | None:
        """test.json, or None where there is none (no validation split, not finished) or it is not ours."""
        try:
            result = json.loads(self.test_result.read_text(encoding="utf-8")) if is_regular(self.test_result) else None
        except (OSError, ValueError):
            return None
        return result if isinstance(result, dict) and isinstance(result.get("test_acc"), float) else None

    # kernels.pt: conv1's kernels by epoch (-1: before training), rewritten whole each epoch

    def kernel_history(self) -> dict[int, torch.Tensor]:
        """conv1's kernels by epoch, -1 for the start; {} for a run without the file (older runs)."""
        require_regular(self.kernels)
        try:
            saved = torch.load(self.kernels, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise file_error(exc, "read", self.kernels) from None
        except Exception:  # torch.load raises many types for damaged files
            saved = None
        shape = (64, 3, 5, 5)
        if not isinstance(saved, dict) or not all(
            isinstance(e, int) and isinstance(w, torch.Tensor) and tuple(w.shape) == shape for e, w in saved.items()
        ):
            raise UserError(f"{self.kernels} is damaged; delete it (only `inspect` reads it)")
        return dict(sorted(saved.items()))

    def save_kernels(self, epoch: int, weight: torch.Tensor) -> None:
        """Record conv1's kernels after `epoch` (-1: before training), dropping later epochs (a resumed
        run trains them again)."""
        try:
            earlier = self.kernel_history()
        except UserError as exc:  # our own derived file: start it again rather than lose the epoch
            log.info(f"{exc.args[0].split(';')[0]}; writing it anew")
            earlier = {}
        history = {e: w for e, w in earlier.items() if e < epoch}
        history[epoch] = weight.detach().float().cpu().clone()
        buffer = io.BytesIO()
        torch.save(history, buffer)
        with atomic_write(self.kernels) as f:
            f.write(buffer.getbuffer())

    def _damaged(self, what: str) -> UserError:
        return UserError(f"{self.metrics} is damaged: {what}; restore it, or delete it to keep only the checkpoints")

    def write_metrics(self, records: list[EpochRecord]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=METRIC_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(r.to_row() for r in records)
        with atomic_write(self.metrics, "w") as f:
            f.write(buffer.getvalue())

    def truncate_metrics(self, epochs_done: int) -> None:
        """Keep only the rows of epochs before `epochs_done` (a resumed run trains the rest again)."""
        self.write_metrics([r for r in self.history() if r.epoch < epochs_done])

    def append_metrics(self, record: EpochRecord) -> None:
        self.write_metrics([*self.history(), record])
        self._tensorboard(record)

    # config.json: written at each start (the first start's fields kept, each resume recorded), and
    # once more when a time budget fixes its steps from the run's own speed

    def write_config(self, config: dict[str, Any], device: torch.device, facts: dict[str, Any] | None = None) -> None:
        """`facts`: what the run adds about this start (world_size, data_folder, the device policy)."""
        env = {**environment(device), "world_size": 1, "data_folder": None, **(facts or {})}
        info = {"config": config, "environment": env, "resumes": []}
        require_regular(self.config)
        try:
            first = self.read_info()
        except UserError as exc:  # our own derived file: rewrite it rather than refuse the run
            log.info(f"{exc}; writing it anew")
            first = {}
        if first:  # a resume: the first start's fields stay, this start is added to the list
            keys = (
                "started",
                "command",
                "device",
                "threads",
                "world_size",
                "git_commit",
                "data_folder",
                "autocast",
                "device_policy",
            )
            resume = {k: env.get(k) for k in keys}
            resumes = first.get("resumes") if isinstance(first.get("resumes"), list) else []
            info = {**first, "config": config, "resumes": [*resumes, resume]}
        self._write_info(info)

    def update_config(self, config: dict[str, Any]) -> None:
        """config.json with the config replaced and the rest as it was: a time budget's steps, fixed
        again before anything was saved from the first plan."""
        self._write_info({**self.read_info(), "config": config})

    def _write_info(self, info: dict[str, Any]) -> None:
        with atomic_write(self.config, "w") as f:
            json.dump(info, f, indent=2)
            f.write("\n")

    def read_info(self) -> dict[str, Any]:
        """config.json as written by `write_config` ({} if absent); damage is a one-line error."""
        require_regular(self.config)
        try:
            info = json.loads(self.config.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise file_error(exc, "read", self.config) from None
        except ValueError:
            info = None
        if not (isinstance(info, dict) and isinstance(info.get("config"), dict)) or not isinstance(
            info.get("environment", {}), dict
        ):
            raise UserError(f"{self.config} is damaged (not this tool's JSON); restore it or start a new run")
        return info

    def info_or_empty(self) -> dict[str, Any]:
        """config.json for readers that can do without it (a report): {} with a notice if damaged."""
        try:
            return self.read_info()
        except UserError as exc:
            log.info(f"{exc}; going on without it")
            return {}

    def data_folder(self) -> str | None:
        """Where the run's data was, as config.json records it (None if unknown or synthetic)."""
        folder = self.info_or_empty().get("environment", {}).get("data_folder")
        return folder if isinstance(folder, str) and "\0" not in folder else None

    def _tensorboard(self, record: EpochRecord) -> None:
        """The same numbers as TensorBoard scalars, when the optional `tensorboard` package is installed."""
        if self._writer is False:
            return
        try:
            if self._writer is None:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(log_dir=str(self.tensorboard_dir))
            for key, value in record.to_row().items():
                if key != "epoch":
                    self._writer.add_scalar(key, value, record.epoch)
            self._writer.flush()
        except ImportError:  # the [tensorboard] extra is not installed: the CSV is the record
            self._writer = False
        except Exception as exc:  # a full disk in its writer thread, say: the CSV stays the record
            log.info(f"TensorBoard events are no longer written ({type(exc).__name__}); metrics.csv has every epoch")
            self._writer = False

    def close(self) -> None:
        if self._writer:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._writer = None

    def attach_log(self) -> logging.Handler:
        """Copy every logged line into train.log; the caller removes the handler when done."""
        require_regular(self.log_file)
        try:
            handler = RunLogHandler(self.log_file, encoding="utf-8")
        except OSError as exc:
            raise file_error(exc, "write", self.log_file) from None
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        if log.level == logging.NOTSET:  # a library caller that set up no logging still gets train.log
            log.setLevel(logging.INFO)
        return handler


class RunLogHandler(logging.FileHandler):
    """train.log is a copy of what is printed: a full disk must not print a logging traceback into
    the one-line error that the failed checkpoint write will give."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def parse_metrics_row(line: str) -> EpochRecord | None:
    """One complete metrics.csv row, or None if it is cut short or not numbers."""
    if not line.endswith("\n"):
        return None
    cells = next(csv.reader([line]), [])
    if len(cells) != len(METRIC_FIELDS):
        return None
    try:
        values = {k: int(v) if k == "epoch" else float(v) for k, v in zip(METRIC_FIELDS, cells, strict=True)}
    except ValueError:
        return None
    return EpochRecord(**values)


def refuse_to_replace(path: Path, protect: tuple[Path, ...]) -> None:
    """Raise unless `path` is provably a run of this tool that nothing else depends on."""
    reason = protected_reason(path, protect) or foreign_reason(path)
    if reason:
        raise UserError(f"--overwrite refused: {path} {reason}; pass a new --run-dir, or move that folder yourself")


def protected_reason(path: Path, protect: tuple[Path, ...]) -> str | None:
    """Folders never replaced, whatever they hold: the current folder and its parents, the home
    folder, and the folders in `protect` (the data) with everything that contains them."""
    target = path.resolve()
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        return "is the current folder or holds it"
    if target == Path.home().resolve():
        return "is the home folder"
    for folder in protect:
        folder = folder.resolve()
        if target == folder or target in folder.parents or folder in target.parents:
            return f"holds or is inside the data folder {folder}"
    return None


def foreign_reason(path: Path) -> str | None:
    """Why `path` is not recognisably a run directory of this tool, or None if it is: its config.json
    must be this tool's, and every entry a regular file of a run's name (or a temp file of one), or
    the tensorboard folder holding event files only. Links and folders under other names are foreign."""
    if not is_regular(path / CONFIG):
        return f"is not a run directory of alexnet-cifar (no {CONFIG} of its own)"
    try:
        info = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = None
    env = info.get("environment") if isinstance(info, dict) else None
    if not (isinstance(env, dict) and "alexnet_cifar" in env and isinstance(info.get("config"), dict)):
        return f"is not a run directory of alexnet-cifar (no {CONFIG} of its own)"
    for entry in path.iterdir():
        if entry.name == TENSORBOARD and entry.is_dir() and not entry.is_symlink():
            if not all(p.name.startswith("events.out.tfevents.") and is_regular(p) for p in entry.iterdir()):
                return f"holds files in {entry} that alexnet-cifar did not write"
        elif not (is_regular(entry) and (entry.name in RUN_FILES or is_temp_of_run_file(entry.name))):
            return f"holds {entry.name!r}, which alexnet-cifar did not write"
        elif entry.name in REPORT_FILES and not has_report_mark(entry):
            return f"holds {entry.name!r} without the mark of alexnet-cifar report"
    return None


def has_report_mark(path: Path) -> bool:
    """A regular file that an alexnet-cifar report wrote (the mark stands near its start)."""
    try:
        if not is_regular(path):
            return False
        with open(path, "rb") as f:  # the first 8 kB only: a report's PNGs and pages can be large
            return REPORT_MARK.encode() in f.read(8192)
    except OSError:
        return False


def is_temp_of_run_file(name: str) -> bool:
    """`.last.pt.1234.tmp` and the like: what atomic_write leaves if the process dies mid-write."""
    match = TEMP_FILE.match(name)
    return match is not None and match.group(1) in RUN_FILES


def is_regular(path: Path) -> bool:
    """A regular file itself, not a link to one, a folder, a FIFO or a device."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def require_regular(path: Path) -> None:
    """Refuse to open a run file that is a link, FIFO or folder: reading could hang, and writing
    (appending to train.log) would go through a link into someone else's file."""
    if os.path.lexists(path) and not is_regular(path):
        raise UserError(f"{path} is not a regular file (a link, folder or pipe); move it away, or start a new run")


def environment(device: torch.device) -> dict[str, Any]:
    from .. import __version__

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
