"""Where the network looks: Grad-CAM on the last convolution, and SmoothGrad input gradients.

Both return one map per image, (N, 32, 32), scaled to [0, 1] per image; both need gradients, so
they work on PyTorch models only (an ONNX model has none).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SMOOTHGRAD_SAMPLES = 16  # noisy copies averaged per image
SMOOTHGRAD_NOISE = 0.15  # noise standard deviation, as a fraction of the input range (-1..1 here)


def grad_cam(model: nn.Module, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) on `conv2`: its 64 activation maps weighted by the mean
    gradient of each image's class logit, rectified and upsampled to the image."""
    kept: dict[str, torch.Tensor] = {}
    handle = model.conv2.register_forward_hook(lambda m, i, output: kept.__setitem__("maps", output))
    try:
        with torch.enable_grad():
            logits = model(images.detach().requires_grad_(True))
            # the gradient of the maps alone: none is computed for, or left on, the weights
            (grads,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), kept["maps"])
    finally:
        handle.remove()
    maps = kept["maps"].detach()
    cam = F.relu((grads.mean((2, 3), keepdim=True) * maps).sum(1, keepdim=True))
    return normalise(cam_to_image(cam.float())[:, 0])


def cam_to_image(cam: torch.Tensor) -> torch.Tensor:
    """conv2's 9x9 cells onto the 32x32 image, each over the pixels it is centred on. With valid
    convolutions cell k is centred on pixel 2k + 7 (conv1 +2, pool x2 +1, conv2 +2), so the map is
    doubled to 18x18 and its edges extended by 7 pixels, not stretched over the whole image."""
    doubled = F.interpolate(cam, scale_factor=2, mode="bilinear", align_corners=False)
    return F.pad(doubled, (7, 7, 7, 7), mode="replicate")


def smoothgrad(
    model: nn.Module, images: torch.Tensor, classes: torch.Tensor, samples: int = SMOOTHGRAD_SAMPLES, seed: int = 0
) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): the input gradient of each image's class logit, averaged
    over noisy copies of the image, as the largest absolute value over the colour channels."""
    gen = torch.Generator().manual_seed(seed)  # the same map for the same image, every time
    total = torch.zeros(images.shape[0], *images.shape[-2:])
    for _ in range(samples):
        noise = torch.randn(images.shape, generator=gen).to(images.device) * SMOOTHGRAD_NOISE * 2
        noisy = (images.detach() + noise).requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(model(noisy).gather(1, classes[:, None]).sum(), noisy)
        total += grad.abs().amax(1).float().cpu()
    return normalise(total / samples)


def normalise(maps: torch.Tensor) -> torch.Tensor:
    """Each map scaled to [0, 1] (an all-zero map stays zero)."""
    flat = maps.detach().float().cpu().flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - low) / (high - low).clamp(min=1e-12)).reshape(maps.shape)
