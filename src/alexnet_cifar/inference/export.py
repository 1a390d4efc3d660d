"""ONNX export for deployment, verified against PyTorch with onnxruntime, and an ONNX model that
`predict` and `evaluate` can run like the PyTorch one.

    alexnet-cifar export runs/RUN/model.pt -o alexnet.onnx

Input "images": float32 (N, 3, 32, 32), normalised as in training ((x/255 - 0.5) / 0.5), any N.
Output "logits": (N, 10). Needs the optional extra: pip install 'alexnet-cifar[onnx]'.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..artifacts.checkpoint import load_model
from ..errors import UserError, file_error

EXTRA_HINT = "ONNX support needs the optional extra: pip install 'alexnet-cifar[onnx]' (onnx, onnxruntime, onnxscript)"
TOLERANCE = 1e-4  # largest |onnxruntime - PyTorch| logit difference accepted by verification
MAX_ONNX_BYTES = 2**31  # protobuf's limit: a bigger file cannot be a one-file ONNX model
EXPORT_HINT = "export one with `alexnet-cifar export`"


def require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise UserError(EXTRA_HINT) from None


def is_onnx_model(path: Path) -> bool:
    """A regular file that parses as an ONNX ModelProto with a graph: the only kind `export` replaces."""
    onnx = require("onnx")
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_size >= MAX_ONNX_BYTES:
            return False
        model = onnx.ModelProto()
        model.ParseFromString(path.read_bytes())
    except Exception:  # protobuf's DecodeError, an unreadable file: either way not provably an ONNX model
        return False
    return model.HasField("graph") and model.ir_version > 0 and len(model.opset_import) > 0


def same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)  # hard links too
    except OSError:  # one of them does not exist
        return False


def check_output(checkpoint: Path, out: Path) -> None:
    """Refuse an output path that would replace the checkpoint, a folder, or a file that is not ONNX."""
    if same_file(out, checkpoint):
        raise UserError(f"-o {out} is the checkpoint itself; pass another -o, such as a path ending in .onnx")
    if out.is_dir():
        raise UserError(f"-o {out} is a folder; pass a file path, such as {out / 'model.onnx'}")
    if not out.parent.is_dir():
        raise UserError(f"-o {out}: folder {out.parent} does not exist; create it or pass another -o")
    if (out.exists() or out.is_symlink()) and not is_onnx_model(out):
        raise UserError(f"{out} exists and is not an ONNX model; pass another -o or remove it")


def temp_beside(out: Path) -> Path:
    """A new empty file of our own in out's folder, so that os.replace is a rename within one file system."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp.onnx", dir=out.parent)
    except OSError as exc:
        raise file_error(exc, "write", out) from None
    os.close(fd)
    return Path(name)


def write_onnx(model: nn.Module, path: Path) -> None:
    """`model` as a one-file ONNX model at `path`, with a dynamic batch axis."""
    batch = torch.export.Dim("batch", min=1)
    # the exporter logs warnings about optional torchvision ops this model does not use
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(
                model,
                (torch.zeros(2, 3, 32, 32),),
                path,
                dynamo=True,
                input_names=["images"],
                output_names=["logits"],
                dynamic_shapes={"x": {0: batch}},
                external_data=False,
                verbose=False,
            )
    finally:
        onnx_log.setLevel(level)


def export_to(checkpoint: Path, out: Path, images: torch.Tensor | None) -> float | None:
    """Export to a temp file beside `out`, verify it on `images` if given, then rename it to `out`.

    On any failure only the temp file is removed: a previous `out` stays as it was.
    """
    require("onnx")
    require("onnxscript")
    check_output(checkpoint, out)
    model, _ = load_model(checkpoint, torch.device("cpu"), channels_last=False)
    tmp = temp_beside(out)
    try:
        write_onnx(model, tmp)
        diff = None if images is None else max_diff(model, tmp, images)
        if diff is not None and not diff <= TOLERANCE:  # NaN fails too
            found = f"onnxruntime differs from PyTorch by {diff:.2e} (more than {TOLERANCE:g})"
            raise UserError(f"{found}; nothing written to {out}; try other versions of torch and onnxruntime")
        os.replace(tmp, out)
    except OSError as exc:
        raise file_error(exc, "write", out) from None
    finally:
        tmp.unlink(missing_ok=True)
    return diff


def export_onnx(checkpoint: Path, out: Path) -> None:
    """Write the checkpoint's (evaluated) weights as ONNX with a dynamic batch axis, atomically, unverified."""
    export_to(checkpoint, out, None)


def export_verified(checkpoint: Path, out: Path, images: torch.Tensor) -> float:
    """Export, and write `out` only if onnxruntime matches PyTorch on `images` (normalised float (N, 3, 32, 32))
    within TOLERANCE. Returns the largest absolute logit difference."""
    require("onnxruntime")
    diff = export_to(checkpoint, out, images)
    assert diff is not None  # images given: always verified
    return diff


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


def max_diff(model: nn.Module, onnx_path: Path, images: torch.Tensor) -> float:
    """Largest absolute logit difference between onnxruntime and PyTorch on `images` (normalised)."""
    with torch.inference_mode():
        expected = model(images).numpy()
    got = OnnxModel(onnx_path)(images).numpy()
    return float(np.abs(got - expected).max())


def verify(checkpoint: Path, onnx_path: Path, images: torch.Tensor) -> float:
    """Largest absolute logit difference between onnxruntime and the checkpoint on `images` (normalised)."""
    model, _ = load_model(checkpoint, torch.device("cpu"), channels_last=False)
    return max_diff(model, onnx_path, images)
