"""ONNX export for deployment, verified against PyTorch with onnxruntime, and an ONNX model that
`predict` and `evaluate` can run like the PyTorch one.

    alexnet-cifar export runs/RUN/model.pt -o alexnet.onnx

Input "images": float32 (N, 3, 32, 32), normalised as in training ((x/255 - 0.5) / 0.5), any N.
Output "logits": (N, 10). Needs the optional extra: pip install 'alexnet-cifar[onnx]'.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import load_model
from .errors import UserError

EXTRA_HINT = "ONNX support needs the optional extra: pip install 'alexnet-cifar[onnx]' (onnx, onnxruntime, onnxscript)"
TOLERANCE = 1e-4  # largest |onnxruntime - PyTorch| logit difference accepted by verification


def require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise UserError(EXTRA_HINT) from None


def export_onnx(checkpoint: Path, out: Path) -> None:
    """Write the checkpoint's (evaluated) weights as ONNX with a dynamic batch axis, atomically."""
    require("onnx")
    require("onnxscript")
    model, _ = load_model(checkpoint, torch.device("cpu"), channels_last=False)
    batch = torch.export.Dim("batch", min=1)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.onnx")
    # the exporter logs warnings about optional torchvision ops this model does not use
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(model, (torch.zeros(2, 3, 32, 32),), tmp, dynamo=True, input_names=["images"],
                              output_names=["logits"], dynamic_shapes={"x": {0: batch}}, external_data=False,
                              verbose=False)  # fmt: skip
        os.replace(tmp, out)
    finally:
        onnx_log.setLevel(level)
        tmp.unlink(missing_ok=True)


class OnnxModel(nn.Module):
    """An ONNX file run by onnxruntime behind the interface of a PyTorch classifier (CPU)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        ort = require("onnxruntime")
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for unreadable files
            raise UserError(f"{path} is not a readable ONNX model ({type(exc).__name__}); export one with "
                            "`alexnet-cifar export`") from None  # fmt: skip
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: x})[0])


def verify(checkpoint: Path, onnx_path: Path, images: torch.Tensor) -> float:
    """Largest absolute logit difference between onnxruntime and PyTorch on `images` (normalised)."""
    model, _ = load_model(checkpoint, torch.device("cpu"), channels_last=False)
    with torch.inference_mode():
        expected = model(images).numpy()
    got = OnnxModel(onnx_path)(images).numpy()
    return float(np.abs(got - expected).max())
