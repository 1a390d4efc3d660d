"""Counting the network's arithmetic: multiply-accumulates per image, per layer and for training."""

from __future__ import annotations

import torch
from torch import nn


def macs_per_layer(model: nn.Module, image_size: int = 32) -> dict[str, int]:
    """Multiply-accumulates per image of each Conv2d and Linear layer, in forward order."""
    macs: dict[str, int] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups

            def hook(m, inp, out, name=name, k=k):
                macs[name] = out[0].numel() * k

        elif isinstance(module, nn.Linear):

            def hook(m, inp, out, name=name):
                macs[name] = m.in_features * m.out_features

        else:
            continue
        hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for h in hooks:
            h.remove()
    return macs


def training_flops_per_image(model: nn.Module) -> int:
    """Forward, input-gradient and weight-gradient passes: 3 x 2 FLOPs per MAC, except that the first
    layer needs no gradient for the input images (2 x 2)."""
    macs = list(macs_per_layer(model).values())
    return 2 * (3 * sum(macs) - macs[0])
