"""Weight averages for phase 2: an exponential moving average of the weights (EMA), kept beside
them as training goes, and WiSE-FT's mix of two models' weights.

Both work on state dicts. Only floating-point tensors are averaged; integer buffers (BatchNorm's
batch counters) are taken from the newer weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def mix_weights(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """WiSE-FT: ``(1 - alpha) * start + alpha * end`` for every floating-point tensor (alpha 0 is
    ``start``, 1 is ``end``); the others are ``end``'s."""
    if start.keys() != end.keys():
        raise ValueError("the two sets of weights belong to different networks")
    return {name: torch.lerp(start[name].to(value), value, alpha) if value.is_floating_point() else value.clone()
            for name, value in end.items()}


class WeightAverage:
    """An exponential moving average of a network's weights, updated after each optimiser step.

    The decay starts low and rises to ``decay`` (timm's ``ModelEmaV3`` warm-up, ``(1 + n) / (10 + n)``),
    so the first steps do not leave the average stuck at the starting weights."""

    def __init__(self, model: nn.Module, *, decay: float):
        self.model, self.decay, self.updates = model, decay, 0
        self.weights = {name: value.detach().clone() for name, value in model.state_dict().items()}

    @torch.no_grad()
    def update(self, *_: object) -> None:  # an optimiser's step hook passes the optimiser and its arguments
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, value in self.model.state_dict().items():
            average = self.weights[name]
            if average.is_floating_point():
                average.lerp_(value.detach(), 1.0 - decay)
            else:
                average.copy_(value)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "weights": {k: v.cpu() for k, v in self.weights.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.updates = state["decay"], state["updates"]
        for name, value in state["weights"].items():
            self.weights[name].copy_(value)

    def swapped_in(self):
        """The averaged network holds the average inside the block, its own weights after it."""
        return weights_in(self.model, self.weights)


@contextlib.contextmanager
def weights_in(model: nn.Module, weights: dict[str, torch.Tensor]) -> Iterator[None]:
    """``model`` holds ``weights`` inside the block and its own again after it, even on an error."""
    own = {name: value.detach().clone() for name, value in model.state_dict().items()}
    model.load_state_dict(weights)
    try:
        yield
    finally:
        model.load_state_dict(own)


def steps_decay(steps_per_epoch: int, *, epochs: float = 2.0) -> float:
    """The decay whose average spans about ``epochs`` epochs of optimiser steps, whatever the
    size of the data (a fixed 0.999 would average over 40 epochs of a 25-step data set)."""
    return 1.0 - 1.0 / max(2.0, epochs * steps_per_epoch)
