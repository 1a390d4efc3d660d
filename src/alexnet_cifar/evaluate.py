"""Evaluation: loss and accuracy of a model over a loader, without gradients."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from .loader import DeviceLoader
from .metrics import Meter


@torch.inference_mode()
def evaluate(
    model: nn.Module, loader: DeviceLoader, criterion: nn.Module, *, amp: bool = False, max_batches: int | None = None
) -> Meter:
    model.eval()
    meter = Meter(loader.device)
    for images, labels in itertools.islice(loader, max_batches):
        with torch.autocast(loader.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(images)
        meter.update(criterion(logits.float(), labels), logits, labels)
    return meter
