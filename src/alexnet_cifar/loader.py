"""Device-resident batches: a whole split lives on the training device as one uint8 tensor.

Each epoch draws one permutation from a generator seeded by (seed, epoch), so the order is the same
on every run and every device, needs no state to resume, and can be sharded across processes.
Batches are sliced, augmented and normalised on the device as whole tensors: no per-sample Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

# The lesson's normalisation (x/255 - 0.5) / 0.5, as one fused multiply-add: x * 2/255 - 1.
PIXEL_SCALE = 2.0 / 255.0
PIXEL_SHIFT = -1.0


@dataclass(frozen=True)
class Augment:
    """Batch-level augmentation; both off reproduces the lesson exactly."""

    crop_padding: int = 0  # pixels of zero padding for a random 32x32 crop; 0 = no crop
    flip: bool = False  # random horizontal flip with probability 1/2

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.flip


class DeviceLoader:
    """Iterates (images float (B,3,32,32), labels int64 (B,)) batches of a split held on `device`."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        augment: Augment = Augment(),
        seed: int = 0,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(labels):
            raise ValueError(f"need uint8 (N,C,H,W) images and N labels, got {tuple(images.shape)} {images.dtype}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.augment = augment
        self.seed = seed
        self.channels_last = channels_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Pick the epoch whose order and augmentation the next iteration draws."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _generator(self) -> torch.Generator:
        # A CPU generator keyed by (seed, epoch): identical draws on any device, and no state to save.
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)

    def order(self) -> torch.Tensor:
        """This epoch's sample indices, on the device."""
        n = len(self.labels)
        if not self.shuffle:
            return torch.arange(n, device=self.device)
        return torch.randperm(n, generator=self._generator()).to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order()
        gen = self._generator() if self.augment.active else None
        if gen is not None:
            gen.manual_seed(gen.initial_seed() + 1)  # an augmentation stream separate from the order
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start : start + self.batch_size]
            x = self.images[idx]
            if gen is not None:
                x = augment_batch(x, self.augment, gen)
            yield self.normalise(x), self.labels[idx]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        x = x.to(dtype=torch.float32, memory_format=memory_format)
        return x.mul_(PIXEL_SCALE).add_(PIXEL_SHIFT)


def augment_batch(x: torch.Tensor, augment: Augment, gen: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding and horizontal flip on a uint8 batch, as one gather each."""
    n, _, h, w = x.shape
    if augment.crop_padding > 0:
        p = augment.crop_padding
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(x.device)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chans, rows, cols]
    if augment.flip:
        flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x
