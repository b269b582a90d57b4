"""Phase 2's trial of backbone learning rates: how far the backbone should move, chosen per data
set on the validation split before the real epochs, as the linear probe chooses its L2 strength.

Each candidate multiple of the head's rate trains the model from phase 1's weights for what
phase 2's first epoch will be (its batches, at its warmed-up rate), and is validated; the weights
go back to phase 1's after each. Near ImageNet a backbone at the head's full rate undoes the head
and the gentle rate wins; far from it the backbone has to move, and the full rate wins. Shorter
trials judged the first steps' disturbance rather than where the epoch ends: on the digits a
third of an epoch put x1 at val 0.64 against x0.1's 0.82, where a whole warmed-up epoch gives
x1 0.89 against 0.85 and x1 ends 3 points higher.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from tlcli.data.loading import reseed_loader
from tlcli.engine.averaging import weights_in
from tlcli.engine.loop import train_one_epoch, validate
from tlcli.engine.state import Trainer


@dataclass
class TrialResult:
    chosen: float
    batches: int  # training batches each candidate ran
    scores: dict[float, dict[str, float]]  # multiple -> its val_loss and val_acc
    start: dict[str, float]  # phase 1's model on the same validation split

    def to_dict(self) -> dict:
        return {"chosen": self.chosen, "batches": self.batches, "start": self.start,
                "candidates": [{"backbone_lr_mult": mult, **score} for mult, score in self.scores.items()]}

    def describe(self) -> str:
        tried = ", ".join(f"x{mult:g}: val acc {s['val_acc']:.4f} loss {s['val_loss']:.4f}" for mult, s in self.scores.items())
        return (f"backbone learning rate: x{self.chosen:g} the head's, chosen by a trial of {self.batches} batches (an epoch) each "
                f"on the validation split ({tried}; phase 1: val acc {self.start['val_acc']:.4f})")


def _better(score: dict[str, float], other: dict[str, float]) -> bool:
    """Higher validation accuracy; on a tie, lower validation loss."""
    return (score["val_acc"], -score["val_loss"]) > (other["val_acc"], -other["val_loss"])


def choose_backbone_rate(trainer: Trainer, network: torch.nn.Module, candidates: tuple[float, ...],
                         make_optimizer: Callable[[float], torch.optim.Optimizer]) -> TrialResult:
    """Try each multiple in ``candidates`` (gentlest first: it wins ties) from ``network``'s
    present weights, which it holds again afterwards; ``make_optimizer(mult)`` builds a fresh
    optimiser at that multiple, at the first epoch's rate. The trainer's own is left untouched."""
    t = trainer
    batches = len(t.train_loader)
    start_weights = {name: value.detach().clone() for name, value in network.state_dict().items()}

    def scored() -> dict[str, float]:
        done = validate(t)
        return {"val_loss": done.loss, "val_acc": done.accuracy}

    start = scored()
    scores: dict[float, dict[str, float]] = {}
    for mult in candidates:
        with weights_in(network, start_weights):
            torch.manual_seed(t.seed * 1000 + 1)  # the draws of the run's first epoch, for every candidate
            reseed_loader(t.train_loader, t.seed * 1000 + 1)
            # A fresh optimiser and scaler, no schedule: the run's own stay untouched.
            train_one_epoch(replace(t, optimizer=make_optimizer(mult), scaler=t.precision.scaler(), scheduler=None, scheduler_per_batch=False))
            scores[mult] = scored()
    chosen = candidates[0]
    for mult in candidates[1:]:
        if _better(scores[mult], scores[chosen]):
            chosen = mult
    return TrialResult(chosen, batches, scores, start)
