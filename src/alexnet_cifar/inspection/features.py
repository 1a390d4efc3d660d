"""What the network computes on the way: feature maps, the 192-dimensional fc2 features, nearest
neighbours in that space (AlexNet paper, Figure 4) and a 2-D map of it."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.loader import DeviceLoader
from ..device import autocast

MAP_LAYERS = ("conv1", "max_pool1", "conv2", "max_pool2")
TSNE_MIN_POINTS = 10  # below this a 2-D embedding shows nothing (and its perplexity has no room)


@torch.inference_mode()
def feature_maps(model: nn.Module, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """The activations of one image (3, 32, 32) after each of MAP_LAYERS: (channels, h, w) on the CPU."""
    kept: dict[str, torch.Tensor] = {}
    handles = [
        getattr(model, name).register_forward_hook(lambda m, i, out, name=name: kept.__setitem__(name, out))
        for name in MAP_LAYERS
    ]
    try:
        model(image[None])
    finally:
        for handle in handles:
            handle.remove()
    return {name: kept[name][0].float().cpu() for name in MAP_LAYERS}


@torch.inference_mode()
def fc2_features(model: nn.Module, loader: DeviceLoader, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The fc2 output (after its ReLU) of every image of `loader`, in the loader's order: (N, 192),
    float32 on the CPU; computed under autocast to `dtype` if given (None: float32)."""
    model.eval()
    kept: list[torch.Tensor] = []
    handle = model.fc2.register_forward_hook(lambda m, i, out: kept.append(out.float().cpu()))
    try:
        for images, _ in loader:
            with autocast(loader.device, dtype):
                model(images)
    finally:
        handle.remove()
    return torch.cat(kept)


def nearest(pool: torch.Tensor, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(distances, indices) of each query's `k` nearest rows of `pool` by Euclidean distance, nearest
    first, in one batched call (direct differences, not the matrix-product shortcut, whose rounding
    would put an image a hair away from itself)."""
    distances = torch.cdist(queries.double(), pool.double(), compute_mode="donot_use_mm_for_euclid_dist")
    found = distances.topk(k, dim=1, largest=False)
    return found.values.float(), found.indices


def pca_2d(features: torch.Tensor) -> np.ndarray:
    """The first two principal components of `features` (N, D): (N, 2)."""
    centred = features.double() - features.double().mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    xy = (centred @ v[:2].T).numpy()
    return np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))  # one image has one component: the other is 0


def tsne_2d(features: torch.Tensor, seed: int = 0) -> np.ndarray | None:
    """t-SNE through scikit-learn (the `inspect` extra), or None where it is not installed."""
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        return None
    if len(features) < TSNE_MIN_POINTS:
        return None
    start = pca_2d(features)  # a PCA start makes t-SNE repeatable and keeps the global layout
    spread = start[:, 0].std()
    init = start / spread * 1e-4 if spread > 0 else "random"  # all features alike (dead units): no layout
    tsne = TSNE(n_components=2, init=init, random_state=seed, perplexity=min(30.0, (len(features) - 1) / 3))
    return tsne.fit_transform(features.numpy().astype(np.float32))
