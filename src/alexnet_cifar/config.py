"""One typed training config; named recipes are instances of it.

A recipe is the starting point; a JSON or TOML file, then command-line flags, override its fields.
Unknown keys and out-of-range values are errors that name the key, what is allowed and the fix.
The resolved config is written into every run directory.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEVICES = ("auto", "cpu", "cuda", "mps")
AMP_MODES = ("off", "on", "auto", "bf16", "fp16")
SCHEDULES = ("constant", "linear", "cosine")
MAX_SEED = 2**32 - 1  # numpy's limit too; the loader keys each epoch by seed * 1_000_003 + epoch


@dataclass(frozen=True)
class TrainConfig:
    recipe: str = "seed"
    # optimisation: the lesson's plain SGD
    epochs: int = 20  # passes over the 50,000 training images
    time_budget: float = 0.0  # seconds for training and its evaluations (--time-budget 5m); the run
    # measures its speed at start-up and sets `steps` to fit, with the schedule stretched over them. 0 = off
    steps: int = 0  # optimizer steps in all (the last epoch may be partial); 0 = epochs x batches per epoch
    batch_size: int = 64  # images per SGD step
    lr: float = 0.1  # SGD peak learning rate (for batch 64 when scale_lr is set)
    scale_lr: bool = False  # scale lr linearly with batch_size / 64
    momentum: float = 0.0
    nesterov: bool = False  # Nesterov momentum (needs momentum > 0)
    weight_decay: float = 0.0  # L2 on weights only (not biases)
    schedule: str = "constant"  # lr over the run, stepped per batch: constant, linear or cosine decay
    warmup_epochs: float = 0.0  # linear warm-up from 0 to lr; with linear decay this is a one-cycle
    final_lr: float = 0.0  # fraction of lr left at the end of a decaying schedule
    label_smoothing: float = 0.0  # cross-entropy target smoothing, 0..1
    ema: float = 0.0  # decay per step of an exponential moving average of the weights, evaluated
    # and saved as the final weights; 0 = off
    lookahead_every: int = 0  # steps between lookahead updates (airbench: 5); 0 = off
    lookahead_decay: float = 0.7738  # the slow weights' decay at the end of the run (0.95^5), reached
    # as decay x (step / steps)^3; after the last step the trained weights are the slow ones
    # initialisation (the network stays the lesson's; only its starting weights change)
    whiten: bool = False  # conv1 starts as a whitening filter bank of the training images' 5x5 patches
    whiten_eps: float = 0.1  # added to each patch-covariance eigenvalue before 1/sqrt: limits the
    # gain of the weakest directions (squared pixel units of the [-1, 1] images; 0.1 measured best)
    whiten_freeze_epochs: float = 0.0  # epochs during which conv1's weights stay as initialised
    dirac: bool = False  # conv2 (64 -> 64) starts as the identity on its centre tap, plus its default noise
    # augmentation, done on the device on whole batches
    crop_padding: int = 0  # pixels of zero padding for random 32x32 crops; 0 = off
    flip: bool = False  # random horizontal flips
    alternate_flip: bool = False  # with flip: each image is flipped on alternate epochs (on a random half
    # of the images in the first) instead of at random every epoch
    # evaluation
    test_batch_size: int = 128  # the lesson's; any size gives the same numbers up to rounding
    lesson_metrics: bool = False  # average per-batch means as the lesson did, instead of per sample
    tta: bool = False  # evaluate on each test image and its mirror, averaging the logits
    tta_shift: int = 0  # with tta: also the views shifted by this many pixels (up-left and down-right,
    # each with its mirror): 6 forward passes per image instead of 2. 0 = mirror only
    valid_split: int = 0  # training images held out (stratified, one split for all runs) for the per-epoch
    # Valid columns and best.pt; the test set is then evaluated once, at the end. 0 = the lesson's way:
    # the per-epoch Valid columns are the test set
    # reproducibility and runtime (none of these change the arithmetic beyond float rounding)
    seed: int = 0  # model init, batch order and augmentation
    deterministic: bool = False  # torch.use_deterministic_algorithms; CPU runs repeat exactly anyway
    device: str = "auto"  # auto = cuda, else mps, else cpu
    threads: int = 0  # CPU threads for torch; 0 = torch's default (one per physical core)
    channels_last: bool = True  # NHWC memory format: about 1.7x faster convolutions on CPU
    amp: str = "off"  # autocast: off, bf16, fp16, on = the device's native half type, auto = on where it is
    # faster (device.py's policy; docs/DEVICES.md)
    compile: bool = False  # torch.compile the model (first epoch pays the compilation)

    def __post_init__(self) -> None:
        for f in fields(self):  # accept 1 for 1.0, as JSON and TOML writers often do
            value = getattr(self, f.name)
            if f.type == "float" and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
        if isinstance(self.amp, bool):  # amp was a switch before "auto" existed (older runs and files)
            object.__setattr__(self, "amp", "on" if self.amp else "off")
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_TYPES = {
    "int": (int, "an integer"),
    "float": (float, "a number"),
    "bool": (bool, "true or false"),
    "str": (str, "a string"),
}
_POSITIVE_INTS = ("epochs", "batch_size", "test_batch_size")


def validate(cfg: TrainConfig) -> None:
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        expected, kind = _TYPES[str(f.type)]
        if (isinstance(value, bool) and f.type != "bool") or not isinstance(value, expected):
            raise UsageError(f"{f.name} = {value!r} is not {kind}; set it to {kind} such as {f.default!r}")
    for name in _POSITIVE_INTS:
        _check(name, getattr(cfg, name), getattr(cfg, name) >= 1, "an integer >= 1")
    _check("lr", cfg.lr, math.isfinite(cfg.lr) and cfg.lr > 0, "a finite number > 0")
    for name in ("momentum", "label_smoothing"):
        value = getattr(cfg, name)
        _check(name, value, math.isfinite(value) and 0 <= value < 1, "a number in [0, 1)")
    _check("weight_decay", cfg.weight_decay, math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0, "a number >= 0")
    _check("schedule", cfg.schedule, cfg.schedule in SCHEDULES, f"one of {', '.join(SCHEDULES)}")
    _check(
        "warmup_epochs",
        cfg.warmup_epochs,
        0 <= cfg.warmup_epochs <= cfg.epochs,
        f"a number in [0, epochs={cfg.epochs}]",
    )
    _check("final_lr", cfg.final_lr, 0 <= cfg.final_lr <= 1, "a fraction in [0, 1]")
    _check("ema", cfg.ema, 0 <= cfg.ema < 1, "a decay in [0, 1), such as 0.999; 0 turns it off")
    _check("lookahead_every", cfg.lookahead_every, cfg.lookahead_every >= 0, "an integer >= 0 such as 5; 0 = off")
    _check("lookahead_decay", cfg.lookahead_decay, 0 <= cfg.lookahead_decay < 1, "a decay in [0, 1), such as 0.77")
    _check(
        "time_budget",
        cfg.time_budget,
        math.isfinite(cfg.time_budget) and 0 <= cfg.time_budget <= 30 * 86_400,
        "a number of seconds in [0, 2592000] (the flag takes 90s, 5m or 1h); 0 = off",
    )
    _check("steps", cfg.steps, cfg.steps >= 0, "an integer >= 0 (0 = epochs x batches per epoch)")
    _check("whiten_eps", cfg.whiten_eps, math.isfinite(cfg.whiten_eps) and cfg.whiten_eps > 0, "a number > 0")
    _check(
        "whiten_freeze_epochs",
        cfg.whiten_freeze_epochs,
        0 <= cfg.whiten_freeze_epochs <= cfg.epochs,
        f"a number in [0, epochs={cfg.epochs}]",
    )
    _check("alternate_flip", cfg.alternate_flip, not cfg.alternate_flip or cfg.flip, "true only with flip = true")
    _check("tta_shift", cfg.tta_shift, 0 <= cfg.tta_shift <= 8, "an integer 0..8 (pixels)")
    _check("tta_shift", cfg.tta_shift, not cfg.tta_shift or cfg.tta, "0 unless tta = true")
    _check("nesterov", cfg.nesterov, not cfg.nesterov or cfg.momentum > 0, "true only with momentum > 0")
    _check("crop_padding", cfg.crop_padding, 0 <= cfg.crop_padding <= 16, "an integer 0..16")
    _check(
        "valid_split",
        cfg.valid_split,
        0 <= cfg.valid_split <= 25_000 and cfg.valid_split % 10 == 0,
        "a multiple of 10 (one tenth per class) in [0, 25000], such as 5000; 0 = no split",
    )
    _check("seed", cfg.seed, 0 <= cfg.seed <= MAX_SEED, f"an integer in [0, {MAX_SEED}]")
    _check("threads", cfg.threads, 0 <= cfg.threads <= 1024, "an integer in [0, 1024] (0 = torch's default)")
    _check("device", cfg.device, cfg.device in DEVICES, f"one of {', '.join(DEVICES)}")
    _check("amp", cfg.amp, cfg.amp in AMP_MODES, f"one of {', '.join(AMP_MODES)}")


def _check(name: str, value: object, ok: bool, allowed: str) -> None:
    if not ok:
        raise UsageError(f"{name} = {value!r} is not allowed; use {allowed}")


# The faster recipes share one optimiser: Nesterov SGD under a one-cycle (linear) schedule with
# weight decay and label smoothing, evaluated with flip TTA; bf16 autocast where the device runs it fast.
_TUNED = {
    "batch_size": 64,
    "lr": 0.05,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,
    "schedule": "linear",
    "label_smoothing": 0.1,
    "tta": True,
    "amp": "auto",
    "test_batch_size": 256,
}
RECIPES: dict[str, TrainConfig] = {
    # The lesson, unchanged: plain SGD lr 0.1, batch 64, 20 epochs, no augmentation, float32 arithmetic.
    "seed": TrainConfig(),
    # The least CPU wall time to the lesson's 70%: two epochs, half an epoch of warm-up, conv1 started
    # as a whitening filter bank (about 3 points at 2 epochs).
    "fast": TrainConfig(recipe="fast", epochs=2, warmup_epochs=0.5, whiten=True, **_TUNED),
    # The highest test accuracy within 60 epochs: the same with random crops and flips.
    "best": TrainConfig(recipe="best", epochs=60, warmup_epochs=1.0, crop_padding=4, flip=True, **_TUNED),
}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A JSON or TOML file of config fields (by extension; TOML otherwise)."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, or a FIFO that would block the read
        raise UsageError(f"config file {path} is not a regular file; pass a readable .json or .toml file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"cannot read config file {path}: {getattr(exc, 'strerror', exc)}; pass a readable .json or .toml file"
        ) from None
    try:
        values = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except ValueError as exc:  # JSONDecodeError and TOMLDecodeError are both ValueErrors
        raise UsageError(f"config file {path} is not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}") from None
    if not isinstance(values, dict):
        raise UsageError(f"config file {path} must hold a table of fields, not a {type(values).__name__}")
    return values


def resolve_config(recipe: str = "seed", *overrides: dict[str, Any]) -> TrainConfig:
    """The named recipe with each dict of overrides applied in order (a file's, then the flags')."""
    if not isinstance(recipe, str) or recipe not in RECIPES:
        raise UsageError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)} (see `alexnet-cifar recipes`)")
    known = {f.name for f in fields(TrainConfig)}
    merged: dict[str, Any] = {}
    for values in overrides:
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"unknown config key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
        merged.update(values)
    merged.pop("recipe", None)
    return dataclasses.replace(RECIPES[recipe], recipe=recipe, **merged)


def recipes_table() -> str:
    """Every field of every recipe, side by side; fields that differ from the seed recipe are starred."""
    names = list(RECIPES)
    seed = RECIPES["seed"].to_dict()
    width = max(len(f.name) for f in fields(TrainConfig))
    lines = [f"{'field':<{width}}  " + "".join(f"{n:>12}" for n in names)]
    for f in fields(TrainConfig):
        if f.name == "recipe":
            continue
        cells = []
        for name in names:
            value = getattr(RECIPES[name], f.name)
            cells.append(f"{value!s:>11}" + ("*" if value != seed[f.name] else " "))
        lines.append(f"{f.name:<{width}}  " + "".join(cells))
    return "\n".join(lines)
