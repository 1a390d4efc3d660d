"""Classify image files: any image Pillow reads, in any mode and size, resized to 32x32.

alexnet-cifar predict runs/RUN/model.pt cat.jpg photos/
"""

from __future__ import annotations

import errno
import os
import stat
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from ..data.loader import PIXEL_SCALE, PIXEL_SHIFT
from ..errors import UserError

IMAGE_SUFFIXES = frozenset(Image.registered_extensions())  # .png, .jpg, .webp, .bmp, ...
# Decoded pixels allowed per image (192 MB as RGB): above any real photo that is not a JPEG (those are
# checked after the draft below, so even 100-megapixel camera JPEGs pass), far below a decompression
# bomb (a PNG of a few kB declaring 30000x30000 would need 2.7 GB); Pillow's own limit is a traceback.
MAX_PIXELS = 64_000_000
DRAFT_SIZE = (128, 128)  # JPEGs decode at 1/2, 1/4 or 1/8 scale while staying at least this big


class ImageError(UserError):
    """One file predict cannot use; the message leaves out the path, which the per-file line starts with."""


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: 16- and 32-bit greyscale are scaled, not clipped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or values.max() > 255 else 255.0
        img = Image.fromarray(np.clip(values / top * 255 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))  # transparent areas become white
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def check_regular(mode: int, path: Path) -> None:
    """Only regular files are read: a FIFO or a device named x.png would block (or never end) on read."""
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not stat.S_ISREG(mode):
        kind = "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise ImageError(f"not a regular file ({kind}); pass an image file")


def open_regular(path: Path) -> BinaryIO:
    """`path` opened for reading, refused unless it is a regular file (checked before and after opening)."""
    check_regular(os.stat(path).st_mode, path)  # a device is never opened: opening one can have effects
    nonblock = getattr(os, "O_NONBLOCK", 0)  # if a FIFO replaced the file since, open returns at once
    fd = os.open(path, os.O_RDONLY | nonblock)
    try:
        check_regular(os.fstat(fd).st_mode, path)
        if nonblock:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def open_unlimited(f: BinaryIO) -> Image.Image:
    """Image.open without Pillow's size check, which raises before the size can be named; ours follows."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        return Image.open(f)
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def check_size(declared: tuple[int, int], img: Image.Image) -> None:
    """Refuse an image over MAX_PIXELS from its header (after any draft), before a pixel is decoded."""
    if img.width * img.height > MAX_PIXELS:
        w, h = declared
        limit = f"over the limit of {MAX_PIXELS:,} pixels"
        raise ImageError(f"image is {w}x{h} pixels, {limit}; resize it first (the model sees it at 32x32)")


def decode_rgb(path: Path) -> Image.Image:
    """8-bit RGB of a regular file under MAX_PIXELS; large JPEGs are decoded at 1/2 to 1/8 scale."""
    with open_regular(path) as f, open_unlimited(f) as img, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # formats that check again on load
        declared = img.size
        img.draft("RGB", DRAFT_SIZE)  # JPEG only (DCT scaling): a 4000x3000 photo decodes as 500x375
        check_size(declared, img)
        img.load()
        return to_rgb(img)


def load_image(path: Path) -> torch.Tensor:
    """(3, 32, 32) uint8, resized with Lanczos filtering (antialiased when shrinking)."""
    small = decode_rgb(path).resize((32, 32), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(small, dtype=np.uint8).copy()).permute(2, 0, 1)


def find_images(paths: Iterable[Path]) -> list[Path]:
    """Files as given; folders walked recursively for files with an image suffix, in sorted order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(path)
    return found


@dataclass(frozen=True)
class Prediction:
    path: Path
    top: list[tuple[str, float]] | None  # (class, probability), most likely first
    error: str | None = None

    def line(self) -> str:
        if self.top is None:
            return f"{self.path}: error: {self.error}"
        return f"{self.path}: " + ", ".join(f"{name} {p:.3f}" for name, p in self.top)

    def to_dict(self) -> dict[str, object]:
        top = None if self.top is None else [{"class": c, "probability": p} for c, p in self.top]
        return {"path": str(self.path), "top": top, "error": self.error}


def read_image(path: Path) -> tuple[torch.Tensor | None, str | None]:
    try:
        return load_image(path), None
    except ImageError as exc:
        return None, str(exc)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # a frame inside (ICO, GIF) too big
        return None, f"image is over the limit of {MAX_PIXELS:,} pixels; resize it first"
    except FileNotFoundError:
        return None, "no such file"
    except IsADirectoryError:
        return None, "is a directory"
    except UnidentifiedImageError:
        return None, "not an image Pillow can read"
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or malformed files
        return None, f"cannot read image ({exc})"


@torch.inference_mode()
def predict_files(
    model: nn.Module, paths: Sequence[Path], classes: Sequence[str], topk: int = 3, batch_size: int = 256
) -> list[Prediction]:
    """Top-k classes per file; unreadable files get an error and do not stop the others."""
    device = next(model.parameters(), torch.zeros(0)).device  # an ONNX model has none: the CPU
    read = [(path, *read_image(path)) for path in paths]
    good = [(path, image) for path, image, _ in read if image is not None]
    probs: dict[Path, torch.Tensor] = {}
    for start in range(0, len(good), batch_size):
        chunk = good[start : start + batch_size]
        x = torch.stack([image for _, image in chunk]).to(device).float().mul_(PIXEL_SCALE).add_(PIXEL_SHIFT)
        p = model(x.contiguous(memory_format=torch.channels_last)).float().softmax(1).cpu()
        probs.update({path: row for (path, _), row in zip(chunk, p, strict=True)})
    results = []
    for path, image, error in read:
        if image is None:
            results.append(Prediction(path, None, error))
            continue
        values, indices = probs[path].topk(min(topk, len(classes)))
        results.append(
            Prediction(path, [(classes[i], v) for v, i in zip(values.tolist(), indices.tolist(), strict=True)])
        )
    return results
