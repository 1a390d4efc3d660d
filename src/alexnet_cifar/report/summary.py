"""The model at a glance: the lesson's printout, then a per-layer table of output shapes,
parameters and multiply-accumulates per 32x32 image."""

from __future__ import annotations

from torch import nn

from ..model import AlexNet
from .flops import layer_outputs, macs_per_layer


def layer_table(model: nn.Module) -> list[tuple[str, tuple[int, ...], int, int]]:
    """(name, output shape for one image, parameters, multiply-accumulates) per top-level layer."""
    outputs = layer_outputs(model, model.named_children())
    macs = macs_per_layer(model)
    rows = []
    for name, module in model.named_children():
        params = sum(p.numel() for p in module.parameters())
        layer_macs = sum(v for k, v in macs.items() if k == name or k.startswith(name + "."))
        rows.append((name, tuple(outputs[name].shape[1:]), params, layer_macs))
    return rows


def model_summary(model: nn.Module | None = None) -> str:
    model = model or AlexNet()
    rows = layer_table(model)
    lines = [str(model), "", f"{'layer':<10} {'output shape':<16} {'parameters':>12} {'MACs per image':>16}"]
    for name, shape, params, macs in rows:
        lines.append(f"{name:<10} {shape!s:<16} {params:>12,} {macs:>16,}")
    total_params = sum(r[2] for r in rows)
    total_macs = sum(r[3] for r in rows)
    lines.append(f"{'total':<10} {'':<16} {total_params:>12,} {total_macs:>16,}")
    return "\n".join(lines)
