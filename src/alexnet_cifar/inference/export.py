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
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..artifacts.checkpoint import load_model
from ..artifacts.onnx_model import OnnxModel, require
from ..errors import UserError, file_error

TOLERANCE = 1e-4  # largest |onnxruntime - PyTorch| logit difference accepted by verification
MAX_ONNX_BYTES = 2**31  # protobuf's limit: a bigger file cannot be a one-file ONNX model
MARK_KEY = "exported_by"  # metadata every exported model carries: export replaces only such files
MARK_VALUE = "alexnet-cifar"


def is_onnx_model(path: Path) -> bool:
    """A regular file that parses as an ONNX model with a graph and this tool's mark: the only kind
    `export` replaces (another program's model is the user's, whatever its format)."""
    onnx = require("onnx")
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_size >= MAX_ONNX_BYTES:
            return False
        model = onnx.ModelProto()
        model.ParseFromString(path.read_bytes())
    except Exception:  # protobuf's DecodeError, an unreadable file: either way not provably an ONNX model
        return False
    marked = any(p.key == MARK_KEY and p.value == MARK_VALUE for p in model.metadata_props)
    return model.HasField("graph") and model.ir_version > 0 and len(model.opset_import) > 0 and marked


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
        raise UserError(
            f"{out} exists and is not an ONNX model exported by alexnet-cifar; pass another -o or remove it"
        )


def temp_beside(out: Path) -> Path:
    """A new empty file of our own in out's folder, so that os.replace is a rename within one file system."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp.onnx", dir=out.parent)
    except OSError as exc:
        raise file_error(exc, "write", out) from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)  # mkstemp's 0600 would make the model private; files get the usual mode
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
    onnx = require("onnx")
    proto = onnx.load(str(path))
    mark = proto.metadata_props.add()
    mark.key, mark.value = MARK_KEY, MARK_VALUE
    onnx.save(proto, str(path))


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


def verification_images(data_dir: Path | None, count: int = 256) -> tuple[torch.Tensor, str]:
    """Normalised images to compare onnxruntime with PyTorch on: test images where CIFAR-10 is at
    hand, else random ones; and a few words saying which."""
    from ..data.cifar10 import has_cifar10, load_cifar10, resolve_data_dir
    from ..data.loader import normalize

    root = resolve_data_dir(data_dir)
    if has_cifar10(root):
        return normalize(load_cifar10(root).test.images[:count]), f"{count} test images from {root}"
    images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return normalize(images), f"{count} random images"
