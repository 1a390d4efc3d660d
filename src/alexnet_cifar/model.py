"""The AlexNet-style CNN of the lesson, layer for layer and name for name.

`print(AlexNet())` reproduces the lesson's printout, and its state_dict loads into the lesson's
own class unchanged. Nothing here knows about data or training.
"""

from __future__ import annotations

import torch
from torch import nn


class AlexNet(nn.Module):
    """conv5x5(3->64) pool3/2 conv5x5(64->64) pool3/2 fc1024->384->192->10; 576,778 parameters."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 64, 5), nn.ReLU(True))  # 32x32 -> 28x28
        self.max_pool1 = nn.MaxPool2d(3, 2)  # -> 13x13
        self.conv2 = nn.Sequential(nn.Conv2d(64, 64, 5, 1), nn.ReLU(True))  # -> 9x9
        self.max_pool2 = nn.MaxPool2d(3, 2)  # -> 4x4, so 64*4*4 = 1024 features
        self.fc1 = nn.Sequential(nn.Linear(1024, 384), nn.ReLU(True))
        self.fc2 = nn.Sequential(nn.Linear(384, 192), nn.ReLU(True))
        self.fc3 = nn.Linear(192, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.max_pool1(self.conv1(x))
        x = self.max_pool2(self.conv2(x))
        # flatten, not view: a channels_last input is not contiguous in NCHW order
        x = torch.flatten(x, 1)
        return self.fc3(self.fc2(self.fc1(x)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
