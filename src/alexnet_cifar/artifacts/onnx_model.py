"""An ONNX file run by onnxruntime behind the interface of a PyTorch classifier, its signature checked
before anything runs: what `predict` and `evaluate` load for a `.onnx` path."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError

EXTRA_HINT = "ONNX support needs the optional extra: pip install 'alexnet-cifar[onnx]' (onnx, onnxruntime, onnxscript)"
EXPORT_HINT = "export one with `alexnet-cifar export`"


def require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise UserError(EXTRA_HINT) from None


def shapes(args: Sequence) -> str:
    """onnxruntime's inputs or outputs as 'name tensor(float) (batch, 3, 32, 32)', for messages."""
    dims = [", ".join("?" if d is None else str(d) for d in a.shape) for a in args]
    return " and ".join(f"{a.name} {a.type} ({d})" for a, d in zip(args, dims, strict=True)) or "nothing"


def fits(shape: Sequence, tail: tuple[int, ...]) -> bool:
    """Any batch dimension (fixed, named or unknown) followed by exactly `tail`."""
    return len(shape) == len(tail) + 1 and tuple(shape[1:]) == tail


def is_classifier(inputs: Sequence, outputs: Sequence) -> bool:
    """One float (N, 3, 32, 32) input and one (N, 10) output, as onnxruntime describes them."""
    one_image_input = len(inputs) == 1 and inputs[0].type == "tensor(float)" and fits(inputs[0].shape, (3, 32, 32))
    return one_image_input and len(outputs) == 1 and fits(outputs[0].shape, (10,))


class OnnxModel(nn.Module):
    """An ONNX file run by onnxruntime behind the interface of a PyTorch classifier (CPU)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        ort = require("onnxruntime")
        self.path = path
        if not path.is_file():  # a FIFO would block onnxruntime's read forever
            raise UserError(f"{path} is not a regular file; pass an ONNX model written by `alexnet-cifar export`")
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for unreadable files
            raise UserError(f"{path} is not a readable ONNX model ({type(exc).__name__}); {EXPORT_HINT}") from None
        self.check_signature()
        self.input_name = self.session.get_inputs()[0].name
        batch = self.session.get_inputs()[0].shape[0]
        self.batch = batch if isinstance(batch, int) else None  # None: any batch size

    def check_signature(self) -> None:
        """Refuse, before any run, an ONNX model that is not a CIFAR-10 classifier (another network)."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if not is_classifier(inputs, outputs):
            found = f"{self.path} takes {shapes(inputs)} and gives {shapes(outputs)}"
            expected = "one tensor(float) input (batch, 3, 32, 32) and one output (batch, 10)"
            raise UserError(f"{found}; expected {expected}; {EXPORT_HINT}")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.detach().to("cpu", torch.float32).contiguous().numpy()
        if self.batch is not None and len(x) != self.batch:
            found = f"{self.path} takes batches of exactly {self.batch} images, got {len(x)}"
            raise UserError(f"{found}; {EXPORT_HINT} (its batch size is free)")
        try:
            logits = self.session.run(None, {self.input_name: x})[0]
        except Exception as exc:  # onnxruntime's own types (Fail, InvalidArgument, RuntimeException)
            reason = " ".join(str(exc).split())[:300]  # one line, however long the runtime's message
            raise UserError(f"onnxruntime could not run {self.path}: {reason}; {EXPORT_HINT}") from None
        return torch.from_numpy(logits)
