"""The lesson's own input pipeline and training and evaluation steps, kept as it wrote them, for
the benchmark to time against ours in the same process."""

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
