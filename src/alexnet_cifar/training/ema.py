"""An exponential moving average of the weights: a smoother model to evaluate and keep."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        # Early on, a plain average of the few weights seen so far: the random init must not linger.
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """ema <- d * ema + (1 - d) * weights, after each optimizer step."""
        self.updates += 1
        averaged, current = list(self.model.parameters()), [p.detach() for p in model.parameters()]
        # one fused update of all ten tensors (one kernel launch on GPUs, not ten); lists of unequal length raise
        torch._foreach_lerp_(averaged, current, 1 - self.current_decay())

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and the update count that drives the warm-up; the decay is the config's."""
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = state["updates"]
