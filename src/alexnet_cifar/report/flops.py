"""Counting the network's arithmetic: multiply-accumulates per image, per layer and for training."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def layer_outputs(
    model: nn.Module, layers: Iterable[tuple[str, nn.Module]], image_size: int = 32
) -> dict[str, torch.Tensor]:
    """Each named layer's output for one zero image, in the order the forward pass reaches them."""
    outputs: dict[str, torch.Tensor] = {}
    hooks = [
        module.register_forward_hook(lambda m, inp, out, name=name: outputs.__setitem__(name, out))
        for name, module in layers
    ]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for h in hooks:
            h.remove()
    return outputs


def layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-accumulates per image of a Conv2d or Linear layer, given its output for one image."""
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        return output[0].numel() * k
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    raise TypeError(f"no MAC count for {type(module).__name__}")


def macs_per_layer(model: nn.Module, image_size: int = 32) -> dict[str, int]:
    """Multiply-accumulates per image of each Conv2d and Linear layer, in forward order."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    outputs = layer_outputs(model, layers.items(), image_size)
    return {name: layer_macs(layers[name], out) for name, out in outputs.items()}


def training_flops_per_image(model: nn.Module) -> int:
    """Forward, input-gradient and weight-gradient passes: 3 x 2 FLOPs per MAC, except that the first
    layer needs no gradient for the input images (2 x 2)."""
    macs = list(macs_per_layer(model).values())
    return 2 * (3 * sum(macs) - macs[0])
