"""Device-resident batches: a whole split lives on the training device as one uint8 tensor, and
batches are sliced, augmented and normalised there as whole tensors, with no per-sample Python."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

# The lesson's normalisation (x/255 - 0.5) / 0.5, as one fused multiply-add: x * 2/255 - 1.
PIXEL_SCALE = 2.0 / 255.0
PIXEL_SHIFT = -1.0
ALTERNATE_KEY = -1  # the epoch-independent generator key of alternating flips (epochs key from 0 up)


def normalize(
    images_uint8: torch.Tensor, *, memory_format: torch.memory_format = torch.preserve_format
) -> torch.Tensor:
    """uint8 pixels -> float32 in [-1, 1], the lesson's normalisation; always a new tensor."""
    x = images_uint8.to(dtype=torch.float32, memory_format=memory_format, copy=True)
    return x.mul_(PIXEL_SCALE).add_(PIXEL_SHIFT)


@dataclass(frozen=True)
class EpochPlan:
    order: torch.Tensor  # (N,) sample indices
    shifts: torch.Tensor | None  # (N, 2) crop offsets, or None without cropping
    flips: torch.Tensor | None  # (N,) bool, or None without flipping


@dataclass(frozen=True)
class Augment:
    """Batch-level augmentation; both off reproduces the lesson exactly."""

    crop_padding: int = 0  # pixels of zero padding for a random 32x32 crop; 0 = no crop
    flip: bool = False  # random horizontal flip with probability 1/2
    alternate_flip: bool = False  # with flip: each image flips on alternate epochs (a random half in epoch 0)


@dataclass(frozen=True)
class Sampling:
    """How an epoch draws its batches: all off is the test set's plain order."""

    shuffle: bool = False
    seed: int = 0  # with the epoch number, keys the order and the augmentation draws
    augment: Augment = Augment()
    drop_last: bool = False  # drop a short last batch (distributed runs: the ranks must step together)


@dataclass(frozen=True)
class Shard:
    """This process's slice of every global batch, under torchrun."""

    rank: int = 0
    world_size: int = 1


class DeviceLoader:
    """Iterates (images float (B,3,32,32), labels int64 (B,)) batches of a split held on `device`.

    Each epoch draws one permutation from a generator seeded by (seed, epoch), so the order is the
    same on every run and every device, needs no state to resume, and can be sharded across processes.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        sampling: Sampling = Sampling(),
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        shard: Shard = Shard(),
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(labels):
            raise ValueError(f"need uint8 (N,C,H,W) images and N labels, got {tuple(images.shape)} {images.dtype}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle, self.seed, self.augment = sampling.shuffle, sampling.seed, sampling.augment
        self.drop_last = sampling.drop_last
        self.channels_last = channels_last
        # Several processes: each global batch of batch_size * world_size consecutive positions of the
        # epoch's order is split into one slice per rank, so the processes together see what one
        # process with the global batch would.
        self.rank, self.world_size = shard.rank, shard.world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Pick the epoch whose order and augmentation the next iteration draws."""
        self.epoch = epoch

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        """Batches per epoch for this rank (the same on every rank)."""
        n = len(self.labels)
        return n // self.global_batch if self.drop_last else -(-n // self.global_batch)

    def plan(self) -> EpochPlan:
        """This epoch's order and augmentation draws, made up front so any batch can be produced
        alone (a resumed epoch starts mid-way with the same batches an unbroken one would have)."""
        n = len(self.labels)
        # A CPU generator keyed by (seed, epoch): identical draws on any device, and no state to save.
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        shifts = flips = None
        if self.augment.crop_padding > 0:
            shifts = torch.randint(0, 2 * self.augment.crop_padding + 1, (n, 2), generator=gen).to(self.device)
        if self.augment.flip and self.augment.alternate_flip:
            flips = self.alternating_flips()[order].to(self.device)
        elif self.augment.flip:
            flips = (torch.rand(n, generator=gen) < 0.5).to(self.device)
        return EpochPlan(order.to(self.device), shifts, flips)

    def alternating_flips(self) -> torch.Tensor:
        """(N,) bool per image, not per position: a random half of the images (drawn once per seed)
        flip in even epochs, the other half in odd ones, so every two epochs show each image both ways."""
        first = torch.Generator().manual_seed(self.seed * 1_000_003 + ALTERNATE_KEY)
        return (torch.rand(len(self.labels), generator=first) < 0.5) ^ bool(self.epoch % 2)

    def order(self) -> torch.Tensor:
        """This epoch's sample indices, on the device."""
        return self.plan().order

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches()

    def batches(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This epoch's batches from batch number `start` on."""
        plan = self.plan()
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        for i in range(start, len(self)):
            first = i * self.global_batch + self.rank * self.batch_size
            pos = slice(first, min(first + self.batch_size, len(self.labels)))
            if pos.start >= pos.stop:  # a short last global batch can leave a rank nothing
                continue
            idx = plan.order[pos]
            x = self.images[idx]
            if plan.shifts is not None:
                x = random_crop(x, self.augment.crop_padding, plan.shifts[pos])
            if plan.flips is not None:
                x = torch.where(plan.flips[pos, None, None, None], x.flip(3), x)
            yield normalize(x, memory_format=memory_format), self.labels[idx]


def random_crop(x: torch.Tensor, padding: int, shifts: torch.Tensor) -> torch.Tensor:
    """Crop each zero-padded image at its own (dy, dx) in 0..2*padding, as one gather."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    rows = (shifts[:, 0, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (shifts[:, 1, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]
