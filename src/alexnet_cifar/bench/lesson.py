"""The lesson's own input pipeline and training step, kept verbatim in spirit for comparison.

torchvision's CIFAR10 turns each image into a PIL image and the lesson's `data_tf` turns it back
into a normalised tensor, one sample at a time; the lesson's loop reads the loss and accuracy back
to the host after every batch. The benchmark times this against our pipeline in the same process.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.cifar10 import Split


def data_tf(x: Image.Image) -> torch.Tensor:
    """The lesson's transform, as written there."""
    x = np.array(x, dtype="float32") / 255
    x = (x - 0.5) / 0.5
    x = x.transpose((2, 0, 1))
    return torch.from_numpy(x)


class LessonDataset(Dataset):
    """What torchvision.datasets.CIFAR10 does per sample: HWC uint8 -> PIL image -> transform."""

    def __init__(self, split: Split) -> None:
        self.data = split.images.permute(0, 2, 3, 1).contiguous().numpy()  # (N, 32, 32, 3), as torchvision keeps it
        self.targets = split.labels.tolist()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return data_tf(Image.fromarray(self.data[index])), self.targets[index]


def lesson_loader(split: Split, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(LessonDataset(split), batch_size=batch_size, shuffle=shuffle, generator=gen)


def lesson_train_step(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, optimizer: torch.optim.Optimizer, criterion: nn.Module
) -> tuple[float, float]:
    """One step of the lesson's `train`: loss and accuracy read back to the host every batch."""
    output = model(images)
    loss = criterion(output, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item(), (output.argmax(1) == labels).sum().item() / labels.shape[0]


@torch.no_grad()  # the lesson marked evaluation inputs volatile, i.e. no autograd
def lesson_eval_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, criterion: nn.Module) -> float:
    output = model(images)
    criterion(output, labels).item()
    return (output.argmax(1) == labels).sum().item() / labels.shape[0]


# The lesson's own printed run (20 epochs, per-batch averages, one GPU): drawn beside ours in reports.
LESSON_HISTORY = {
    "train_loss": [1.705926, 1.246754, 1.010857, 0.855797, 0.747337, 0.656047, 0.567300, 0.497418, 0.429598,
                   0.369809, 0.319623, 0.274986, 0.238880, 0.204735, 0.176767, 0.166942, 0.146755, 0.124807,
                   0.126861, 0.103216],
    "train_acc": [0.374520, 0.555766, 0.644222, 0.698789, 0.739250, 0.771639, 0.801251, 0.824309, 0.850164,
                  0.868666, 0.886589, 0.901934, 0.915181, 0.928688, 0.937900, 0.943374, 0.948449, 0.957241,
                  0.956702, 0.964954],
    "valid_loss": [1.530230, 1.431630, 1.190140, 0.994367, 1.434243, 0.981409, 0.834201, 0.978063, 0.945215,
                   1.063736, 0.987968, 1.396439, 1.130270, 1.373174, 2.049194, 1.377223, 1.456631, 1.543074,
                   1.417461, 2.383004],
    "valid_acc": [0.450257, 0.513350, 0.584751, 0.657041, 0.570906, 0.684434, 0.722409, 0.702927, 0.706487,
                  0.699565, 0.714201, 0.662975, 0.717860, 0.699367, 0.650811, 0.719838, 0.722211, 0.730024,
                  0.732595, 0.653283],
}  # fmt: skip
