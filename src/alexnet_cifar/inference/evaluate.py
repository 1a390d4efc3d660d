"""Evaluation: loss and accuracy during training, and the full report of `alexnet-cifar evaluate`
(top-1, top-5, per-class accuracy, confusion matrix, optional flip test-time augmentation)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from tqdm import tqdm

from ..data.loader import DeviceLoader
from ..training.metrics import Meter


def classify(model: nn.Module, images: torch.Tensor, tta: bool = False) -> torch.Tensor:
    """Logits; with `tta`, the mean of the logits of each image and its horizontal mirror."""
    logits = model(images)
    return (logits + model(images.flip(3))) / 2 if tta else logits


@torch.inference_mode()
def evaluate(
    model: nn.Module, loader: DeviceLoader, criterion: nn.Module, *, amp: bool = False, tta: bool = False,
    max_batches: int | None = None,
) -> Meter:  # fmt: skip
    model.eval()
    meter = Meter(loader.device)
    for images, labels in itertools.islice(loader, max_batches):
        with torch.autocast(loader.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = classify(model, images, tta)
        meter.update(criterion(logits.float(), labels), logits, labels)
    return meter


@torch.inference_mode()
def predict_logits(
    model: nn.Module, loader: DeviceLoader, *, tta: bool = False, show_progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 logits and labels of the whole split, on the CPU; with `tta`, the mean of the logits
    of each image and its horizontal mirror."""
    model.eval()
    all_logits, all_labels = [], []
    for images, labels in tqdm(
        loader, desc="evaluate", unit="batch", leave=False, disable=None if show_progress else True
    ):
        logits = classify(model, images, tta).float()
        all_logits.append(logits.cpu())
        all_labels.append(labels.cpu())
    return torch.cat(all_logits), torch.cat(all_labels)


@dataclass(frozen=True)
class ClassificationReport:
    classes: list[str]
    images: int
    loss: float  # mean cross-entropy per image
    top1: float
    top5: float
    per_class: list[float]  # accuracy on each class's images
    confusion: list[list[int]]  # rows: true class, columns: predicted class

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def text(self) -> str:
        width = max(len(c) for c in self.classes)
        lines = [f"images {self.images:,}  top-1 {self.top1:.4f}  top-5 {self.top5:.4f}  loss {self.loss:.4f}", "",
                 "per-class accuracy:"]  # fmt: skip
        lines += [f"  {c:<{width}}  {acc:.4f}" for c, acc in zip(self.classes, self.per_class, strict=True)]
        lines += ["", "confusion matrix (rows: true class, columns: predicted):",
                  " " * (width + 2) + "".join(f"{c[:5]:>6}" for c in self.classes)]  # fmt: skip
        for name, row in zip(self.classes, self.confusion, strict=True):
            lines.append(f"  {name:<{width}}" + "".join(f"{n:>6}" for n in row))
        return "\n".join(lines)


def classification_report(logits: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]) -> ClassificationReport:
    n, k = logits.shape
    top5 = logits.topk(min(5, k), dim=1).indices
    predicted = top5[:, 0]
    confusion = torch.zeros(k, k, dtype=torch.long)
    confusion.index_put_((labels, predicted), torch.ones(n, dtype=torch.long), accumulate=True)
    per_class = confusion.diag().double() / confusion.sum(1).clamp(min=1)
    return ClassificationReport(
        classes=list(classes),
        images=n,
        loss=nn.functional.cross_entropy(logits, labels).item(),
        top1=(predicted == labels).double().mean().item(),
        top5=(top5 == labels[:, None]).any(1).double().mean().item(),
        per_class=per_class.tolist(),
        confusion=confusion.tolist(),
    )
