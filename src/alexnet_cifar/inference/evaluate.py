"""Evaluation: loss and accuracy during training, and the full report of `alexnet-cifar evaluate`
(top-1, top-5, per-class accuracy, confusion matrix, optional flip test-time augmentation)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..data.cifar10 import CIFAR10
from ..data.loader import DeviceLoader
from ..device import autocast as autocast_to
from ..progress import progress_bar
from ..training.metrics import Meter

TEST_BATCH = 256  # inference over the test set: the batch size `alexnet-cifar evaluate` and reports use


def classify(model: nn.Module, images: torch.Tensor, tta: bool = False, shift: int = 0) -> torch.Tensor:
    """Logits; with `tta`, the mean of the logits of each image and its horizontal mirror. With a
    `shift` too, that mean counts half, and the same for the image shifted by `shift` pixels up-left
    and down-right (edges reflected) a quarter each: 6 forward passes (airbench's multi-view TTA)."""
    if not tta:
        return model(images)
    mirrored = (model(images) + model(images.flip(3))) / 2
    if not shift:
        return mirrored
    padded = nn.functional.pad(images, (shift,) * 4, mode="reflect")
    size = images.shape[-1]
    up_left = padded[..., 2 * shift :, 2 * shift :]  # content moves up and left by `shift`
    down_right = padded[..., :size, :size]
    views = [(v, v.flip(3)) for v in (up_left, down_right)]
    shifted = sum((model(v) + model(m)) / 2 for v, m in views) / 2
    return (mirrored + shifted) / 2


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: DeviceLoader,
    criterion: nn.Module,
    *,
    autocast: torch.dtype | None = None,
    tta: bool = False,
    tta_shift: int = 0,
    max_batches: int | None = None,
) -> Meter:
    """Loss and accuracy over `loader` (its first `max_batches` batches), left on the device in a Meter;
    the forward runs under `autocast` to that dtype (None: float32), the loss in float32."""
    model.eval()
    meter = Meter(loader.device)
    for images, labels in itertools.islice(loader, max_batches):
        with autocast_to(loader.device, autocast):
            logits = classify(model, images, tta, tta_shift)
        meter.update(criterion(logits.float(), labels), logits, labels)
    return meter


@torch.inference_mode()
def predict_logits(
    model: nn.Module, loader: DeviceLoader, *, tta: bool = False, tta_shift: int = 0, show_progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 logits and labels of the whole split, on the CPU; with `tta`, the mean of the logits
    of each image and its horizontal mirror."""
    model.eval()
    all_logits, all_labels = [], []
    batches = progress_bar(None, "evaluate", show_progress, unit="batch", iterable=loader, unit_scale=False)
    for images, labels in batches:
        logits = classify(model, images, tta, tta_shift).float()
        all_logits.append(logits.cpu())
        all_labels.append(labels.cpu())
    return torch.cat(all_logits), torch.cat(all_labels)


def logits_on_test_set(
    model: nn.Module,
    data: CIFAR10,
    device: torch.device,
    *,
    tta: bool = False,
    tta_shift: int = 0,
    show_progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`predict_logits` over the whole test set, in batches of TEST_BATCH held on `device`."""
    loader = DeviceLoader(data.test.images, data.test.labels, TEST_BATCH, device=device, channels_last=True)
    return predict_logits(model, loader, tta=tta, tta_shift=tta_shift, show_progress=show_progress)


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
        scores = f"images {self.images:,}  top-1 {self.top1:.4f}  top-5 {self.top5:.4f}  loss {self.loss:.4f}"
        lines = [scores, "", "per-class accuracy:"]
        lines += [f"  {c:<{width}}  {acc:.4f}" for c, acc in zip(self.classes, self.per_class, strict=True)]
        column_heads = " " * (width + 2) + "".join(f"{c[:5]:>6}" for c in self.classes)
        lines += ["", "confusion matrix (rows: true class, columns: predicted):", column_heads]
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
