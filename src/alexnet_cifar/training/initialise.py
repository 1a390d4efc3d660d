"""Starting weights from the data, for the lesson's network unchanged (airbench's initialisations,
adapted to a network without batch norm).

- Whitening: conv1's 64 filters become the top 32 eigenvectors of the training images' 5x5x3 patch
  second-moment matrix, each scaled by 1/sqrt(eigenvalue + eps), and their negatives (so that ReLU
  keeps both signs). Its outputs start decorrelated with unit variance: conv1 no longer has to learn
  the images' pixel correlations before anything else.
- Dirac: conv2 (64 -> 64) starts as the identity on its centre tap, plus its default random weights,
  so at first it passes conv1's features on instead of scrambling them.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.loader import normalize

WHITEN_IMAGES = 5000  # training images whose patches estimate the statistics (airbench uses 5,000 too)
CHUNK = 250  # images per unfold: 250 x 784 patches x 75 values in float32 is about 60 MB


def patch_moment(images_uint8: torch.Tensor, kernel: int) -> torch.Tensor:
    """The (C*k*k, C*k*k) second-moment matrix E[p p^T] of every k x k patch of the normalised images,
    summed chunk by chunk into float64."""
    c = images_uint8.shape[1]
    moment = torch.zeros(c * kernel * kernel, c * kernel * kernel, dtype=torch.float64)
    count = 0
    for chunk in images_uint8.split(CHUNK):
        patches = nn.functional.unfold(normalize(chunk.cpu()), kernel)  # (B, C*k*k, L)
        flat = patches.transpose(1, 2).reshape(-1, patches.shape[1])
        moment += (flat.T @ flat).double()
        count += len(flat)
    return moment / count


def whitening_filters(images_uint8: torch.Tensor, kernel: int, filters: int, eps: float) -> torch.Tensor:
    """(filters, C, k, k): the top filters/2 eigenvectors of the patch moment scaled by
    1/sqrt(eigenvalue + eps), then the same negated."""
    c = images_uint8.shape[1]
    if filters % 2 or filters // 2 > c * kernel * kernel:
        raise ValueError(f"need an even number of filters, at most {2 * c * kernel * kernel}, got {filters}")
    eigenvalues, eigenvectors = torch.linalg.eigh(patch_moment(images_uint8, kernel))  # ascending
    top = eigenvalues.flip(0)[: filters // 2]
    vectors = eigenvectors.flip(1)[:, : filters // 2].T  # (filters/2, C*k*k), largest first
    scaled = vectors / torch.sqrt(top + eps)[:, None]
    return torch.cat([scaled, -scaled]).reshape(filters, c, kernel, kernel).float()


def conv1_whitening(images_uint8: torch.Tensor, eps: float) -> torch.Tensor:
    """The lesson's conv1 (64 filters of 5x5x3) as whitening filters of the first WHITEN_IMAGES
    training images: about 1.5 s on a 2-core CPU, computed once per run."""
    return whitening_filters(images_uint8[:WHITEN_IMAGES], kernel=5, filters=64, eps=eps)


@torch.no_grad()
def init_whitening(conv: nn.Conv2d, filters: torch.Tensor) -> None:
    """conv's weights become `filters` (from whitening_filters); its bias zero."""
    conv.weight.copy_(filters.to(conv.weight.device))
    if conv.bias is not None:
        conv.bias.zero_()


@torch.no_grad()
def init_dirac(conv: nn.Conv2d) -> None:
    """Add the identity (channel i to channel i, centre tap) to conv's weights."""
    identity = torch.zeros_like(conv.weight)
    nn.init.dirac_(identity)
    conv.weight.add_(identity)
