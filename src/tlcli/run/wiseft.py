"""WiSE-FT at the end of phase 2: phase 1's weights and phase 2's best, mixed in the proportion
the validation split prefers (Wortsman et al., "Robust fine-tuning of zero-shot models", 2022).

The mix 0 is phase 1's model itself, so the chosen one is never below phase 1 on validation;
between the two ends, a mix often keeps what phase 1 knew and what phase 2 learned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from tlcli.run.checkpoint import atomic_save, load_checkpoint
from tlcli.engine.averaging import mix_weights, weights_in
from tlcli.engine.loop import validate
from tlcli.engine.state import Trainer

MIXES = (0.0, 0.25, 0.5, 0.75, 1.0)  # the share of phase 2's weights


@dataclass
class MixChoice:
    alpha: float
    scores: dict[float, dict[str, float]]  # alpha -> val_loss and val_acc

    def to_dict(self) -> dict:
        return {"alpha": self.alpha, "mixes": [{"alpha": alpha, **score} for alpha, score in self.scores.items()]}

    def describe(self, monitor: str) -> str:
        tried = ", ".join(f"{alpha:g}: {score[monitor]:.4f}" for alpha, score in self.scores.items())
        return (f"WiSE-FT: best.pt holds phase 1's weights and phase 2's best mixed {1 - self.alpha:g} : {self.alpha:g}, "
                f"chosen on the validation split ({monitor} by share of phase 2: {tried})")


def _key(score: dict[str, float], monitor: str) -> tuple[float, float]:
    """Larger is better: the monitored value first, the other one breaking ties."""
    return (score["val_acc"], -score["val_loss"]) if monitor == "val_acc" else (-score["val_loss"], score["val_acc"])


def choose_mix(trainer: Trainer, network: torch.nn.Module, start: dict[str, torch.Tensor], end: dict[str, torch.Tensor],
               *, known: dict[float, dict[str, float]] | None = None) -> tuple[MixChoice, dict[str, torch.Tensor]]:
    """The mix of ``start`` (phase 1's state dict) and ``end`` (phase 2's best) that validates
    best on ``trainer``'s validation split, and its weights; ``known``: scores already measured
    (phase 1's, before phase 2's first step). ``network`` holds its own weights again afterwards.
    On a tie the larger share of phase 2 wins: the tie was measured, the gain of moving on was not."""
    t = trainer
    scores = dict(known or {})
    for alpha in MIXES:
        if alpha in scores:
            continue
        with weights_in(network, mix_weights(start, end, alpha)):
            done = validate(t)
        scores[alpha] = {"val_loss": done.loss, "val_acc": done.accuracy}
    scores = dict(sorted(scores.items()))
    chosen = max(reversed(scores), key=lambda alpha: _key(scores[alpha], t.monitor))
    return MixChoice(chosen, scores), mix_weights(start, end, chosen)


def mix_into_best(best_path: Path, parent: dict[str, torch.Tensor], trainer: Trainer, network: torch.nn.Module, *,
                  known: dict[float, dict[str, float]] | None, write: bool) -> MixChoice | None:
    """Choose the mix of phase 1's weights (``parent``) and best.pt's, and put it in best.pt with
    the choice recorded (``write``: this process writes, rank 0 under torchrun). None when best.pt
    holds a mix already (a run killed after mixing and resumed) or weights of another network."""
    best = load_checkpoint(best_path)
    end = best["state_dict"]
    if best.get("wise_ft") or parent.keys() != end.keys() or any(parent[name].shape != end[name].shape for name in end):
        return None
    choice, weights = choose_mix(trainer, network, parent, end, known=known)
    if write:
        atomic_save({**best, "state_dict": weights, "wise_ft": choice.to_dict(), "weights_of": "WiSE-FT mix"}, best_path)
    return choice
