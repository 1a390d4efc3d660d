"""Classify image files: any image Pillow reads, in any mode and size, resized to 32x32.

alexnet-cifar predict runs/RUN/model.pt cat.jpg photos/
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from .loader import PIXEL_SCALE, PIXEL_SHIFT

IMAGE_SUFFIXES = frozenset(Image.registered_extensions())  # .png, .jpg, .webp, .bmp, ...


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


def load_image(path: Path) -> torch.Tensor:
    """(3, 32, 32) uint8, resized with Lanczos filtering (antialiased when shrinking)."""
    with Image.open(path) as img:
        img.load()
        rgb = to_rgb(img)
    small = rgb.resize((32, 32), Image.Resampling.LANCZOS)
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
