"""A trained model from a file, ready for inference: a checkpoint or plain state_dict (`.pt`), or an
ONNX model (`.onnx`, run by onnxruntime on the CPU)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..device import select_device
from ..errors import UsageError
from .checkpoint import load_model


def load_inference_model(path: Path, device: str = "auto") -> tuple[nn.Module, torch.device]:
    """The model in `path` and the device its inputs go to."""
    if path.suffix == ".onnx":
        from .onnx_model import OnnxModel

        if device not in ("auto", "cpu"):
            raise UsageError(f"--device {device}: an ONNX model runs on the CPU here; drop --device or pass a .pt")
        return OnnxModel(path), torch.device("cpu")
    where = select_device(device)
    model, _ = load_model(path, where)
    return model, where
