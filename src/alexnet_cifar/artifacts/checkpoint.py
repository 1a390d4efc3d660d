"""Checkpoints and weight files: written atomically (temp file, fsync, os.replace), and read as
untrusted input, every entry checked for its type and shape before anything uses it."""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError, file_error
from ..model import AlexNet
from .atomic import write_bytes_atomic

FOREIGN_HINT = "pass a run's last.pt, best.pt or model.pt written by alexnet-cifar"
DAMAGED_HINT = "the file was changed or written by another program: restore it, or start a new run"


def save_weights(path: Path, model: nn.Module) -> None:
    """The model's plain state_dict: loads into the lesson's own AlexNet class unchanged."""
    save_checkpoint(path, model.state_dict())


def save_checkpoint(path: Path, state: Mapping[str, Any] | dict[str, torch.Tensor]) -> None:
    """Serialise in memory first, so that a full disk is an OSError (one line), never torch's own
    RuntimeError halfway through a file; then one atomic write."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes_atomic(path, buffer)


def load_checkpoint(path: Path, training: bool = False) -> dict[str, Any]:
    """A training checkpoint, or a plain state_dict wrapped as {"model": ...}. The weights that
    inference uses are always checked; with `training` (a resume), every other entry too."""
    obj = _read(path)
    state = obj if isinstance(obj, dict) and "model" in obj else {"model": obj}
    check_weights(state["model"], path, "model")
    if training and "progress" in state:
        check_training_state(state, path)
    elif isinstance(state.get("ema"), dict):
        check_weights(state["ema"].get("model"), path, "ema.model")
    elif state.get("ema") is not None:
        raise UserError(f"{path} is damaged: entry ema must be a moving-average state or None; {DAMAGED_HINT}")
    return state


def _read(path: Path) -> object:
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist; {FOREIGN_HINT}")
    if not path.is_file():
        raise UserError(f"checkpoint {path} is not a regular file; {FOREIGN_HINT}")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols: the error below says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise file_error(exc, "read checkpoint", path) from None
    except Exception as exc:  # torch.load raises many types for non-checkpoints and truncation
        raise UserError(f"{path} is not a readable checkpoint ({type(exc).__name__}); {FOREIGN_HINT}") from None


FLOAT_TYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_SHAPES = {name: tuple(t.shape) for name, t in AlexNet().state_dict().items()}


def check_weights(weights: object, path: Path, entry: str) -> None:
    """`weights` must be the lesson's AlexNet state_dict: the same names and shapes, finite floats."""
    if not isinstance(weights, Mapping) or set(weights) != set(_SHAPES):
        raise UserError(f"{path} holds weights of another network, not the lesson's AlexNet; {FOREIGN_HINT}")
    for name, shape in _SHAPES.items():
        t = weights[name]
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape or t.dtype not in FLOAT_TYPES:
            raise UserError(f"{path} holds weights of another network ({entry}.{name}); {FOREIGN_HINT}")
        if not torch.isfinite(t).all():
            raise UserError(f"{path} holds NaN or infinite weights in {entry}.{name}; {DAMAGED_HINT}")


def _int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _float(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _meter(v: object) -> bool:
    if v is None:
        return True
    sums = v.get("sums") if isinstance(v, dict) else None
    return (
        isinstance(sums, torch.Tensor)
        and sums.shape == (4,)
        and sums.dtype in FLOAT_TYPES
        and _int(v.get("samples"))
        and _int(v.get("batches"))
        and (v.get("ranks") is None or (_int(v["ranks"]) and v["ranks"] >= 1))
    )


def _rng(v: object) -> bool:
    if not isinstance(v, dict):
        return False
    torch_state, numpy_state = v.get("torch"), v.get("numpy")
    return (
        isinstance(torch_state, torch.Tensor)
        and torch_state.dtype == torch.uint8
        and isinstance(numpy_state, list | tuple)
        and len(numpy_state) == 5
        and isinstance(v.get("python"), list | tuple)
    )


# What a training checkpoint's progress entry holds (see train.Progress), each with its check.
PROGRESS_FIELDS: dict[str, tuple[str, Callable[[object], bool]]] = {
    "epoch": ("an integer >= 0", _int),
    "batch": ("an integer >= 0", _int),
    "step": ("an integer >= 0", _int),
    "seconds": ("a finite number", _float),
    "best_acc": ("a finite number", _float),
    "meter": ("partial sums or None", _meter),
    "rng": ("random number generator states", _rng),
    "world_size": ("a number of processes >= 1 or None", lambda v: v is None or (_int(v) and v >= 1)),
}


def _dict_or_none(v: object) -> bool:
    return v is None or isinstance(v, dict)


def _optimizer(v: object) -> bool:
    return isinstance(v, dict) and isinstance(v.get("state"), dict) and isinstance(v.get("param_groups"), list)


def _config(v: object) -> bool:
    return isinstance(v, dict) and isinstance(v.get("recipe"), str)


def _optional_str(v: object) -> bool:
    return v is None or isinstance(v, str)


TRAINING_FIELDS: dict[str, tuple[str, Callable[[object], bool]]] = {
    "optimizer": ("an optimizer state", _optimizer),
    "scheduler": ("a scheduler state", lambda v: isinstance(v, dict)),
    "ema": ("a moving-average state or None", _dict_or_none),
    "scaler": ("a float16 gradient scaler's state or None", _dict_or_none),
    "lookahead": ("a lookahead state or None", _dict_or_none),
    "config": ("a config with its recipe", _config),
    "progress": ("the run's progress", lambda v: isinstance(v, dict)),
    "data_folder": ("a folder name or None", _optional_str),
    "data_fingerprint": ("a data fingerprint or None", _optional_str),
}


# absent from older checkpoints
OPTIONAL_ENTRIES = ("data_folder", "data_fingerprint", "scaler", "world_size", "lookahead")


def check_training_state(state: dict[str, Any], path: Path) -> None:
    """Each entry of a training checkpoint, with its type, before a resume touches any of them."""
    _check_entries(state, TRAINING_FIELDS, path, "")
    _check_entries(state["progress"], PROGRESS_FIELDS, path, "progress.")
    has_ema = bool(state["config"].get("ema"))  # the run keeps a moving average, or not
    if (state["ema"] is not None) != has_ema:
        wanted = "a moving-average state" if has_ema else "None (the run keeps no average)"
        raise UserError(f"{path} is damaged: entry ema must be {wanted}; {DAMAGED_HINT}")
    if state["ema"] is not None:
        ema = state["ema"]
        if not _int(ema.get("updates")):
            raise UserError(f"{path} is damaged: entry ema.updates must be an integer >= 0; {DAMAGED_HINT}")
        check_weights(ema.get("model"), path, "ema.model")
    if state["config"].get("lookahead_every"):
        check_lookahead(state.get("lookahead"), state["model"], path)


def check_lookahead(look: object, model: dict[str, Any], path: Path) -> None:
    """The slow weights: one finite float tensor per parameter, shaped as the model's."""
    slow = look.get("slow") if isinstance(look, dict) else None
    if not (isinstance(slow, list) and len(slow) == len(model)):
        raise UserError(f"{path} is damaged: entry lookahead.slow must be the model's weights; {DAMAGED_HINT}")
    check_weights(dict(zip(model, slow, strict=True)), path, "lookahead.slow")


def _check_entries(values: dict[str, Any], schema: dict, path: Path, prefix: str) -> None:
    for name, (allowed, ok) in schema.items():
        value = values.get(name)
        if name not in values and name not in OPTIONAL_ENTRIES:
            raise UserError(f"{path} is damaged: entry {prefix}{name} is missing; {DAMAGED_HINT}")
        if not ok(value):
            found = type(value).__name__
            raise UserError(f"{path} is damaged: entry {prefix}{name} must be {allowed}, not {found}; {DAMAGED_HINT}")


def load_model(path: Path, device: torch.device, channels_last: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """An AlexNet with the weights of a checkpoint or plain state_dict file, ready for inference."""
    state = load_checkpoint(path)
    model = AlexNet()
    # a training checkpoint with a moving average evaluates (and keeps as final weights) the average
    model.load_state_dict(state["ema"]["model"] if state.get("ema") else state["model"])
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, state
