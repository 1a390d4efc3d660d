"""Evaluation: loss and accuracy of a model over a loader, without gradients."""

from __future__ import annotations

import torch
from torch import nn

from .loader import DeviceLoader
from .metrics import Meter


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DeviceLoader, criterion: nn.Module) -> Meter:
    model.eval()
    meter = Meter(loader.device)
    for images, labels in loader:
        logits = model(images)
        meter.update(criterion(logits, labels), logits, labels)
    return meter
