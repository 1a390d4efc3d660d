"""Command line: parse arguments, then call library functions. No training logic lives here.

    alexnet-cifar train [--recipe seed|fast|best] [--epochs N] [--data-dir DIR] ...
    alexnet-cifar train --resume RUN_DIR
    alexnet-cifar evaluate | predict | report | export | summary | recipes | download | bench

Errors the user can fix (UserError) print as one line and exit 1, usage errors 2; an interrupted
run exits 130 (SIGINT) or 143 (SIGTERM) after writing its checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .config import AMP_MODES, DEVICES, RECIPES, TrainConfig, read_config_file, resolve_config
from .errors import Interrupted, UsageError, UserError, file_error

if TYPE_CHECKING:
    from .data.cifar10 import CIFAR10

PROG = "alexnet-cifar"
SEED = RECIPES["seed"]
log = logging.getLogger("alexnet_cifar")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the bad value, what is allowed and where to look."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def checked(text: str, kind: Callable[[str], Any], ok: Callable[[Any], bool], allowed: str) -> Any:
    """`text` as `kind` where `ok` holds, else argparse's error naming the value and what is allowed."""
    with contextlib.suppress(ValueError):
        value = kind(text)
        if ok(value):
            return value
    raise argparse.ArgumentTypeError(f"{text!r} is not allowed; use {allowed}")


def positive_int(text: str) -> int:
    return checked(text, int, lambda v: v >= 1, "an integer >= 1")


def thread_count(text: str) -> int:
    return checked(text, int, lambda v: 1 <= v <= 1024, "an integer from 1 to 1024")


def positive_float(text: str) -> float:
    return checked(text, float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")


def shift_pixels(text: str) -> int:
    return checked(text, int, lambda v: 0 <= v <= 8, "an integer from 0 to 8 (pixels)")


UNITS = {"s": 1, "m": 60, "h": 3600}


def duration(text: str) -> float:
    """'90s', '5m', '1h', '1h30m' or plain seconds -> seconds."""
    if re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", text):  # plain seconds; a bare number after h or m is refused
        text = text.strip() + "s"
    parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*", text)
    if parts is None or not any(parts.groups()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; use seconds, or s, m or h: 90s, 5m, 1h30m")
    hours, minutes, seconds = (float(g or 0) for g in parts.groups())
    value = hours * 3600 + minutes * 60 + seconds
    if not 0 < value <= 30 * 86_400:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; use a duration above 0 and up to 30 days")
    return value


def add_data_args(p: argparse.ArgumentParser, synthetic: bool = False) -> None:
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder holding cifar-10-batches-py/ (default: $CIFAR10_ROOT, else ./data)",
    )
    if synthetic:
        p.add_argument(
            "--synthetic", action="store_true", help="random images of CIFAR-10's size instead of the data, for timing"
        )


def add_checkpoint_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, help="last.pt, best.pt or model.pt of a run")


def add_device_arg(p: argparse.ArgumentParser, what: str = "where to run") -> None:
    p.add_argument("--device", choices=DEVICES, default="auto", help=f"{what} (default: auto)")


def add_quiet_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bar (off anyway when not on a terminal)")


VALID_SPLIT_HELP = (
    "hold out N training images for the per-epoch Valid columns and best.pt, and evaluate the test set once "
    "at the end (default: 0, the lesson's way: the Valid columns are the test set)"
)


def train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", help=f"named recipe, one of {', '.join(RECIPES)} (default: seed)")
    p.add_argument("--config", type=Path, help="JSON or TOML file of config fields, applied over the recipe")
    p.add_argument("--epochs", type=positive_int, help=f"epochs to train (default: {SEED.epochs})")
    p.add_argument(
        "--time-budget",
        type=duration,
        metavar="DURATION",
        help="train for as long as fits in DURATION (90s, 5m, 1h), final evaluation included: the run measures "
        "its speed first, then lays the recipe's schedule over the steps that fit (default: off, --epochs)",
    )
    p.add_argument("--batch-size", type=positive_int, help=f"training images per step (default: {SEED.batch_size})")
    p.add_argument("--lr", type=positive_float, help=f"SGD learning rate (default: {SEED.lr})")
    p.add_argument("--valid-split", type=int, metavar="N", help=VALID_SPLIT_HELP)
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
    switches = {
        "--deterministic": "use deterministic kernels only (default: off; CPU runs repeat exactly anyway)",
        "--compile": "torch.compile the model (default: off)",
    }
    for flag, text in switches.items():
        p.add_argument(flag, action="store_true", default=None, help=text)
    p.add_argument(
        "--amp",
        nargs="?",
        const="on",
        choices=AMP_MODES,
        help="mixed precision: off; bf16; fp16 (with a gradient scaler); on (the same as --amp alone) = the "
        "device's native half type; auto = on where it is faster (docs/DEVICES.md) (default: the recipe's; "
        "seed: off, fast and best: auto)",
    )
    add_data_args(p, synthetic=True)
    p.add_argument("--run-dir", type=Path, help="where to write the run (default: runs/DATE-TIME-RECIPE)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory (default: refuse)")
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last.pt; only --epochs and the machine's settings (--device, "
        "--threads, --amp, --compile, --no-channels-last, --deterministic) may change",
    )
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading missing data")
    p.add_argument("--report", action="store_true", help="write report.html into the run directory at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bars (they are off anyway when not on a terminal)")


def download_args(p: argparse.ArgumentParser) -> None:
    add_data_args(p)
    add_quiet_arg(p)


def bench_args(p: argparse.ArgumentParser) -> None:
    add_data_args(p, synthetic=True)
    add_device_arg(p, "device to time")
    p.add_argument("--repeats", type=positive_int, default=5, help="interleaved rounds (default: 5)")
    p.add_argument("--batches", type=positive_int, default=100, help="batches of 64 per timed block (default: 100)")
    p.add_argument("--eval-images", type=positive_int, default=5000, help="test images per eval block (default: 5000)")
    p.add_argument(
        "--no-epoch",
        dest="epoch",
        action="store_false",
        help="skip timing one whole epoch of the seed recipe (default: time it)",
    )
    p.add_argument(
        "--matmul-seconds",
        type=positive_float,
        default=2.0,
        help="seconds per dtype measuring the matmul rate that bounds the ratios (default: 2.0)",
    )
    p.add_argument("--threads", type=thread_count, help="CPU threads for torch (default: torch's choice)")


def evaluate_args(p: argparse.ArgumentParser) -> None:
    add_checkpoint_arg(p)
    add_data_args(p)
    p.add_argument("--tta", action="store_true", help="average each image's logits with its mirror's (default: off)")
    p.add_argument(
        "--tta-shift",
        type=shift_pixels,
        default=0,
        metavar="PIXELS",
        help="with --tta, also the views shifted by PIXELS up-left and down-right, with mirrors (default: 0)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_quiet_arg(p)
    add_device_arg(p)


def predict_args(p: argparse.ArgumentParser) -> None:
    add_checkpoint_arg(p)
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGE_OR_FOLDER", help="files, or folders to walk")
    p.add_argument("--topk", type=positive_int, default=3, help="classes shown per image (default: 3)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of text")
    p.add_argument(
        "--explain",
        type=Path,
        metavar="DIR",
        help="also write DIR/NAME.explain.png per image: where the network looks (Grad-CAM, SmoothGrad)",
    )
    add_device_arg(p)


def inspect_args(p: argparse.ArgumentParser) -> None:
    from .inspection import MAP_POINTS

    p.add_argument("source", type=Path, metavar="RUN_OR_WEIGHTS", help="a run directory, or a .pt weights file")
    p.add_argument(
        "images", type=Path, nargs="*", metavar="IMAGE_OR_FOLDER", help="your images (default: a test image per class)"
    )
    p.add_argument("--out", type=Path, help="folder for inspect.html and its PNGs (default: the run directory)")
    p.add_argument(
        "--map-points",
        type=positive_int,
        default=MAP_POINTS,
        help=f"test images in the 2-D map (default: {MAP_POINTS})",
    )
    add_data_args(p)
    add_device_arg(p)


def report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory written by train")
    p.add_argument("more", type=Path, nargs="*", metavar="RUN_DIR", help="more runs: one page for all of them")
    p.add_argument("--out", type=Path, help="with several runs: the folder for runs.html and its PNGs")
    add_data_args(p)
    add_device_arg(p)


def compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN_A", help="run directories of group A, one per seed")
    p.add_argument(
        "--against", type=Path, nargs="+", required=True, metavar="RUN_B", help="group B's runs, the same seeds"
    )
    p.add_argument(
        "--resolve",
        type=positive_float,
        default=0.5,
        metavar="POINTS",
        help="say how many seeds a 95%% CI of ± POINTS percentage points needs (default: 0.5)",
    )


SERVE_TOKEN_ENV = "ALEXNET_CIFAR_TOKEN"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "runs_dir",
        type=Path,
        nargs="?",
        default=Path("runs"),
        metavar="RUNS_DIR",
        help="folder of runs (default: runs)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=positive_int, default=8000, help="port (default: 8000)")
    p.add_argument(
        "--token", help=f"every request must carry it as a bearer token (default: ${SERVE_TOKEN_ENV}, if set)"
    )
    add_device_arg(p, "where the models run")


def recipes_args(p: argparse.ArgumentParser) -> None:
    """No options."""


def export_args(p: argparse.ArgumentParser) -> None:
    add_checkpoint_arg(p)
    p.add_argument("-o", "--output", type=Path, default=Path("alexnet.onnx"), help="ONNX file (default: alexnet.onnx)")
    add_data_args(p)


def summary_args(p: argparse.ArgumentParser) -> None:
    """No options."""


def get_args_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Train the lesson's AlexNet on CIFAR-10.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    # name: (its options, what it runs, a line for the list in --help, its own --help's description)
    commands = {
        "train": (
            train_args,
            cmd_train,
            "train the lesson's AlexNet on CIFAR-10",
            "Train the lesson's AlexNet on CIFAR-10; prints the lesson's line per epoch.",
        ),
        "download": (
            download_args,
            cmd_download,
            "download CIFAR-10 into the data folder",
            "Fetch the official archive (md5-checked), else the npm mirror, into DIR.",
        ),
        "bench": (
            bench_args,
            cmd_bench,
            "time the lesson's pipeline against ours, side by side",
            "Interleaved throughput benchmark: (a) the lesson's pipeline, (b) ours with the "
            "same arithmetic, (c) ours at the best settings for the device.",
        ),
        "evaluate": (
            evaluate_args,
            cmd_evaluate,
            "test-set accuracy (top-1, top-5, per class, confusion) of a checkpoint",
            "Evaluate a checkpoint or plain state_dict on the CIFAR-10 test set.",
        ),
        "predict": (
            predict_args,
            cmd_predict,
            "classify image files or folders",
            "Top-k CIFAR-10 classes of any images Pillow reads.",
        ),
        "report": (
            report_args,
            cmd_report,
            "write report.html and PNG plots for a run",
            "Learning curves, confusion matrix, per-class accuracy and the most "
            "confidently wrong test images of a run, in RUN_DIR/report.html.",
        ),
        "inspect": (
            inspect_args,
            cmd_inspect,
            "look inside a trained network: kernels, feature maps, saliency, neighbours",
            "conv1's kernels (and how they formed), feature maps, Grad-CAM and SmoothGrad, nearest training "
            "images, a 2-D map of the test set and the most confused classes, in inspect.html and PNGs.",
        ),
        "compare": (
            compare_args,
            cmd_compare,
            "compare two groups of finished runs, seed by seed, with a 95%% CI and a p-value",
            "Each group's test accuracy (the last epoch's, or with a validation split test.json's) with its 95% CI, "
            "and the paired difference A - B: its 95% CI, a paired t-test's p-value, and the seeds needed to resolve "
            "a given difference.",
        ),
        "serve": (
            serve_args,
            cmd_serve,
            "a local web page: watch runs, classify your images (the [serve] extra)",
            "Serve RUNS_DIR's runs and a page to try their models, with a JSON API (/docs).",
        ),
        "recipes": (
            recipes_args,
            cmd_recipes,
            "list the named recipes and their values",
            "Every config field of every recipe (* = not the seed's).",
        ),
        "export": (
            export_args,
            cmd_export,
            "export a checkpoint to ONNX, verified with onnxruntime",
            "Write an ONNX model with a dynamic batch axis and check onnxruntime's "
            "outputs against PyTorch's on test images (needs the [onnx] extra).",
        ),
        "summary": (
            summary_args,
            cmd_summary,
            "the model as the lesson prints it, then a per-layer table",
            "Layers, output shapes, parameters and multiply-accumulates per image.",
        ),
    }
    for name, (add_options, func, summary, description) in commands.items():
        p = sub.add_parser(name, help=summary, description=description)
        add_options(p)
        p.set_defaults(func=func)
    return parser


def program() -> str:
    """How to run this program again the way it was started: `alexnet-cifar` where that is what
    ran and is on PATH, else this Python with `-m alexnet_cifar` (as `make train` starts it)."""
    on_path = shutil.which(PROG)
    if Path(sys.argv[0]).name == PROG and on_path and Path(on_path).resolve() == Path(sys.argv[0]).resolve():
        return PROG
    try:
        python = os.path.relpath(sys.executable)
    except ValueError:  # another drive, on Windows
        python = sys.executable
    if python.startswith(".."):
        python = sys.executable
    return f"{shlex.quote(python)} -m alexnet_cifar"


def version() -> str:
    from . import __version__

    return __version__


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Recipe, then the config file, then the flags that were given."""
    file_values = read_config_file(args.config) if args.config else {}
    recipe = args.recipe or file_values.get("recipe", "seed")
    return resolve_config(recipe, file_values, flag_values(args))


# The config fields that have a flag of their own (the flag of `batch_size` is --batch-size).
FLAG_FIELDS = ("epochs", "batch_size", "lr", "seed", "device", "threads", "lesson_metrics")
FLAG_FIELDS += ("channels_last", "deterministic", "compile", "amp", "valid_split", "time_budget")


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given on the command line (None means not given)."""
    return {n: getattr(args, n) for n in FLAG_FIELDS if getattr(args, n) is not None}


def cmd_train(args: argparse.Namespace) -> int:
    from .artifacts.run_dir import RunDir, default_run_dir
    from .data.source import open_data
    from .device import select_device
    from .training.loop import fit
    from .training.signals import StopOnSignal

    if args.resume:
        return cmd_resume(args)
    cfg = config_from_args(args)
    select_device(cfg.device)  # fail before anything is written
    hint = " or drop --no-download"
    data = open_data(args.data_dir, synthetic=args.synthetic, allow_download=not args.no_download, hint=hint)
    path = args.run_dir or default_run_dir(cfg.recipe)
    with StopOnSignal() as stop:  # from before an old run is moved aside until the training ends
        if not is_main_process():
            run = RunDir(path)
        else:
            protect = (data.folder,) if data.folder is not None else ()
            run = RunDir.create(path, overwrite=args.overwrite, protect=protect)
        try:
            fit(cfg, data, run, show_progress=not args.quiet, stop=stop)
        except BaseException:
            run.abandon()  # a replaced run comes back if the new one never wrote a checkpoint
            raise
    if args.report:
        write_run_report(run.path, data, cfg.device)
    return 0


PEER_GONE = ("Connection reset by peer", "Connection closed by peer", "Broken pipe")  # gloo's words


def lost_a_peer(exc: Exception) -> bool:
    """Under torchrun: a collective failed because another rank's process ended."""
    from .training.ranks import from_environment

    return from_environment().enabled and any(words in str(exc) for words in PEER_GONE)


def is_main_process() -> bool:
    """Rank 0 of a torchrun job, or a plain single process: the one that writes and prints."""
    from .training.ranks import from_environment

    return from_environment().is_main


def write_run_report(run_dir: Path, data: CIFAR10 | None, device: str) -> None:
    from .device import select_device
    from .report.run_report import write_report

    if is_main_process():
        log.info(f"report written: {write_report(run_dir, data, select_device(device))}")


def cmd_resume(args: argparse.Namespace) -> int:
    from .data.source import open_data
    from .training.loop import fit
    from .training.resume import open_resume

    if args.run_dir or args.overwrite:
        raise UsageError("--resume continues the run in its own folder; drop --run-dir and --overwrite")
    asked = {**(read_config_file(args.config) if args.config else {}), **flag_values(args)}
    if args.recipe:
        asked["recipe"] = args.recipe
    resume = open_resume(args.resume, asked)
    if resume.finished:
        done = resume.state["progress"]["epoch"]
        extend = f"pass --epochs N above {done} to extend it" if not resume.config.steps else "its length is fixed"
        log.info(f"run {resume.run.path} has finished all {done} epochs; nothing to do ({extend})")
        return 0
    own_data = args.data_dir is None and not args.synthetic  # the run's own data, unless told otherwise
    data_dir = resume.data_folder if own_data else args.data_dir
    synthetic = resume.data_folder is None if own_data else args.synthetic
    # another folder is only read: a resume must not fetch data into a folder it will then refuse
    hint = " or drop --no-download" if own_data else ""
    data = open_data(data_dir, synthetic=synthetic, allow_download=own_data and not args.no_download, hint=hint)
    fit(resume.config, data, resume.run, resume=resume.state, show_progress=not args.quiet)
    if args.report:
        write_run_report(resume.run.path, data, resume.config.device)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from .data.cifar10 import load_cifar10, resolve_data_dir
    from .data.download import download_cifar10

    data_dir = resolve_data_dir(args.data_dir)
    download_cifar10(data_dir, log=log.info, show_progress=not args.quiet)
    log.info(load_cifar10(data_dir).summary())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from .bench.throughput import BenchPlan, run_benchmark
    from .data.source import open_data
    from .device import select_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    data = open_data(args.data_dir, synthetic=args.synthetic)
    log.info(data.summary())
    plan = BenchPlan(
        args.repeats, args.batches, args.eval_images, full_epoch=args.epoch, matmul_seconds=args.matmul_seconds
    )
    log.info(run_benchmark(data, device, plan, log=log.info).report())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .artifacts.model_file import load_inference_model
    from .data.source import open_data
    from .inference.evaluate import classification_report, logits_on_test_set

    model, device = load_inference_model(args.checkpoint, args.device)
    data = open_data(args.data_dir)
    if args.tta_shift and not args.tta:
        raise UsageError(f"--tta-shift {args.tta_shift} needs --tta: add --tta, or drop --tta-shift")
    views = {"tta": args.tta, "tta_shift": args.tta_shift}
    logits, labels = logits_on_test_set(model, data, device, **views, show_progress=not (args.quiet or args.json))
    report = classification_report(logits, labels, data.classes)
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), **views, **report.to_dict()}))
    else:
        shifted = f" and {args.tta_shift}-pixel shifts" if args.tta_shift else ""
        log.info(f"{args.checkpoint} on the CIFAR-10 test set{' with flip TTA' + shifted if args.tta else ''}")
        log.info(report.text())
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .artifacts.model_file import load_inference_model
    from .data.cifar10 import CLASSES
    from .inference.predict import find_images, predict_files

    if args.explain is not None:
        from .report.run_report import check_out

        if args.checkpoint.suffix == ".onnx":
            raise UsageError(
                "--explain needs gradients, which an ONNX model has not; pass the .pt it was exported from"
            )
        check_out(args.explain)
    model, _ = load_inference_model(args.checkpoint, args.device)
    paths = find_images(args.images)
    if not paths:
        raise UserError(f"no image files found in {', '.join(map(str, args.images))}; pass image files or folders")
    results = predict_files(model, paths, CLASSES, topk=args.topk)
    if args.explain is not None:
        explain(model, args.device, [r.path for r in results if r.error is None], args.explain)
    if args.json:
        print(json.dumps([r.to_dict() for r in results]))
    else:
        for r in results:
            print(r.line(), file=sys.stdout if r.error is None else sys.stderr)
    failed = sum(r.error is not None for r in results)
    if failed:
        print(f"{PROG}: {failed} of {len(results)} files could not be read", file=sys.stderr)
    return 1 if failed else 0


def explain(model: object, device: str, paths: list[Path], out: Path) -> None:
    from .device import select_device
    from .inference.predict import load_image
    from .inspection.page import write_explanations

    written = write_explanations(model, select_device(device), [(p, load_image(p)) for p in paths], out)
    many = "s" if len(written) != 1 else ""
    print(f"{PROG}: {len(written)} explanation{many} in {out}", file=sys.stderr)  # stdout may be --json's


def cmd_inspect(args: argparse.Namespace) -> int:
    from .artifacts.run_dir import RunDir
    from .data.cifar10 import load_cifar10
    from .data.source import find_test_data
    from .device import select_device

    if not args.source.exists():
        raise UserError(f"{args.source} does not exist; pass a run directory or a .pt weights file")
    if args.data_dir is not None:  # asked for: it must be there
        data = load_cifar10(args.data_dir)
    else:
        trained_on = RunDir(args.source).data_folder() if args.source.is_dir() else None
        data = find_test_data(None, trained_on, "no neighbours, map or confusions, and no default images")
    from .inspection.page import write_inspection

    images = user_images(args.images) if args.images else None
    write_inspection(args.source, data, select_device(args.device), images, args.out, args.map_points)
    return 0


def user_images(paths: list[Path]) -> list[tuple[str, object, None]]:
    """The readable images among `paths` (files or folders), named by file; each unreadable one is a
    line on stderr, as in predict. Their classes are unknown: a file name is not a label."""
    from .inference.predict import find_images, read_image

    found = find_images(paths)
    if not found:
        raise UserError(f"no image files found in {', '.join(map(str, paths))}; pass image files or folders")
    images = []
    for path in found:
        image, error = read_image(path)
        if error is not None:
            print(f"{path}: error: {error}", file=sys.stderr)
        else:
            images.append((path.stem, image, None))
    if not images:
        raise UserError(f"none of the {len(found)} image files could be read; see the lines above")
    return images


def cmd_report(args: argparse.Namespace) -> int:
    from .artifacts.run_dir import RunDir
    from .data.source import find_test_data

    if args.more:
        from .report.runs_report import write_runs_report

        if args.out is None:
            raise UsageError("several runs make one page in a folder of its own: pass --out FOLDER")
        log.info(f"report written: {write_runs_report([args.run_dir, *args.more], args.out)}")
        return 0
    if not args.run_dir.is_dir():
        raise UserError(f"run directory {args.run_dir} does not exist; pass a folder written by alexnet-cifar train")
    run = RunDir(args.run_dir)
    if args.data_dir is None and run.info_or_empty().get("environment", {}).get("synthetic") is True:
        log.info("the run trained on synthetic images: the report has learning curves only (pass --data-dir)")
        data = None
    else:
        data = find_test_data(args.data_dir, run.data_folder())
    write_run_report(args.run_dir, data, args.device)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .report.compare import compare_runs

    print(compare_runs(args.runs, args.against, target=args.resolve / 100).text())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .device import select_device

    try:
        import uvicorn

        from .serve.app import LOOPBACK_HOSTS, create_app
    except ImportError as exc:
        raise UsageError(
            f"serve needs the [serve] extra ({exc.name} is missing): pip install 'alexnet-cifar[serve]'"
        ) from None
    if not args.runs_dir.is_dir():
        raise UserError(f"{args.runs_dir} is not a folder; pass the folder that holds your run directories")
    token = args.token or os.environ.get(SERVE_TOKEN_ENV) or None
    if args.host not in LOOPBACK:
        guard = "every request needs the token" if token else f"WITHOUT a token: pass --token or set {SERVE_TOKEN_ENV}"
        print(f"{PROG}: warning: serving on {args.host}, reachable from other machines, {guard}", file=sys.stderr)
    hosts = LOOPBACK_HOSTS if args.host in LOOPBACK else None  # on loopback: no DNS rebinding either
    app = create_app(args.runs_dir, token, select_device(args.device), allowed_hosts=hosts)
    log.info(f"serving {args.runs_dir} at http://{args.host}:{args.port} (API documentation: /docs); Ctrl-C stops it")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from .config import recipes_table

    print(recipes_table())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .inference.export import export_verified, verification_images

    images, source = verification_images(args.data_dir)
    diff = export_verified(args.checkpoint, args.output, images)
    log.info(f"exported {args.output}; onnxruntime matches PyTorch on {source} (max |diff| {diff:.1e})")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from .report.summary import model_summary

    print(model_summary())
    return 0


DEBUG_ENV = "ALEXNET_CIFAR_DEBUG"  # set to 1 to see the traceback of an unexpected error


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a path the console cannot encode must not end the command
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    try:
        log.setLevel(logging.INFO if is_main_process() else logging.WARNING)  # one voice under torchrun
        args = get_args_parser().parse_args(argv)
        return args.func(args)
    except Interrupted as exc:
        hint = f"; resume with: {program()} train --resume {shlex.quote(str(exc.resume_dir))}" if exc.resume_dir else ""
        print(f"{PROG}: {exc}{hint}", file=sys.stderr)
        return exc.exit_code
    except (UserError, OSError) as exc:
        sys.stdout.flush()
        # an OS refusal that no code expected is still one line
        error = file_error(exc, "use", exc.filename or "a file") if isinstance(exc, OSError) else exc
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a fault no check foresaw (torch.compile without a compiler, say): still one line
        if os.environ.get(DEBUG_ENV):
            raise
        if lost_a_peer(exc):  # not this rank's fault: the peer that failed first says why
            print(
                f"{PROG}: error: another process of this torchrun job ended mid-run (the connection to it "
                "was lost); its own error says why",
                file=sys.stderr,
            )
            return 1
        what = " ".join(str(exc).split())[:300] or "no message"
        print(
            f"{PROG}: error: unexpected {type(exc).__name__}: {what}; rerun with {DEBUG_ENV}=1 for the "
            "traceback, and please report it",
            file=sys.stderr,
        )
        return 1
    finally:
        log.removeHandler(handler)


def run() -> NoReturn:
    """The `alexnet-cifar` command and `python -m alexnet_cifar`: main(), then exit with its code."""
    from .training.ranks import from_environment

    code = main()
    if from_environment().enabled:
        # A torchrun worker leaves without the interpreter's teardown: the run's files are fsynced and
        # closed by now, but the model still holds gloo's process group, whose threads can reach for
        # a finalizing interpreter and abort the process ("terminate called without an active
        # exception", SIGABRT), which torchrun reports as a failed job (a two-rank DDP script on a busy
        # 2-core machine: 12 of 70 runs aborted so, 0 of 30 with this exit).
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
