"""Averages of the weights: an exponential moving average to evaluate and keep (`EMA`), and lookahead
(`Lookahead`), whose slow weights training restarts from every few steps."""

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


class Lookahead:
    """Lookahead with a warmed-up decay (Zhang et al. 2019; airbench's form): every `every` steps, and
    after the last, the slow weights take (1 - d) of the way to the trained ones and training restarts
    from them. d grows as decay x (step / total)^3, so early training runs free; the trained weights
    end as the slow ones. Unlike `EMA` it changes what is trained, not only what is evaluated."""

    def __init__(self, model: nn.Module, every: int, decay: float, total_steps: int) -> None:
        self.every, self.decay, self.total = every, decay, total_steps
        self.slow = [p.detach().clone() for p in model.parameters()]

    def current_decay(self, step: int) -> float:
        return self.decay * (step / self.total) ** 3

    @torch.no_grad()
    def after_step(self, model: nn.Module, step: int) -> None:
        """`step`: optimizer steps taken so far (1 after the first). The last step also ends a block,
        so the steps since the last multiple of `every` are never lost."""
        if step % self.every == 0 or step >= self.total:
            fast = [p.detach() for p in model.parameters()]
            torch._foreach_lerp_(self.slow, fast, 1 - self.current_decay(min(step, self.total)))
            torch._foreach_copy_(fast, self.slow)

    def state_dict(self) -> dict[str, Any]:
        return {"slow": [t.clone() for t in self.slow]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for mine, saved in zip(self.slow, state["slow"], strict=True):
            mine.copy_(saved)
