"""conv1's learned kernels as pictures, like the AlexNet paper's Figure 3."""

from __future__ import annotations

import numpy as np
import torch


def kernel_grid(weight: torch.Tensor, columns: int = 8, scale: int = 6, gap: int = 2) -> np.ndarray:
    """The kernels (64, 3, 5, 5) as one RGB image (uint8): each kernel stretched to the full range
    on its own (as the paper shows them), enlarged `scale` times, on a white background."""
    k = weight.detach().float().cpu()
    low = k.amin((1, 2, 3), keepdim=True)
    high = k.amax((1, 2, 3), keepdim=True)
    k = ((k - low) / (high - low).clamp(min=1e-12)).permute(0, 2, 3, 1).numpy()  # (64, 5, 5, 3) in [0, 1]
    k = k.repeat(scale, axis=1).repeat(scale, axis=2)
    n, size = len(k), k.shape[1]
    rows = -(-n // columns)
    grid = np.ones((rows * (size + gap) + gap, columns * (size + gap) + gap, 3))
    for i, kernel in enumerate(k):
        r, c = divmod(i, columns)
        top, left = gap + r * (size + gap), gap + c * (size + gap)
        grid[top : top + size, left : left + size] = kernel
    return (grid * 255).round().astype(np.uint8)


def epochs_to_show(epochs: list[int], count: int = 5) -> list[int]:
    """Up to `count` epochs spread from the first to the last (the start, -1, included when saved)."""
    if len(epochs) <= count:
        return epochs
    picks = np.linspace(0, len(epochs) - 1, count).round().astype(int)
    return [epochs[i] for i in sorted(set(picks.tolist()))]
