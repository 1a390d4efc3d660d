"""Checkpoints and weight files, always written atomically (temp file, fsync, os.replace)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_write
from .errors import UserError
from .model import AlexNet


def save_weights(path: Path, model: nn.Module) -> None:
    """The model's plain state_dict: loads into the lesson's own AlexNet class unchanged."""
    with atomic_write(path) as f:
        torch.save(model.state_dict(), f)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """A training checkpoint: model, optimizer, epochs done, config and what resuming needs."""
    with atomic_write(path) as f:
        torch.save(state, f)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint dict, or a plain state_dict wrapped as {"model": ...}; checked against AlexNet."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} does not exist; pass a run's last.pt, best.pt or model.pt") from None
    except Exception as exc:  # torch.load raises many types for non-checkpoints and truncation
        raise UserError(
            f"{path} is not a readable checkpoint ({type(exc).__name__}); pass a file written by alexnet-cifar"
        ) from None
    state = obj if isinstance(obj, dict) and "model" in obj else {"model": obj}
    try:
        AlexNet().load_state_dict(state["model"])
    except Exception:
        raise UserError(
            f"{path} holds weights of another network, not the lesson's AlexNet; pass a file written by alexnet-cifar"
        ) from None
    return state


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
