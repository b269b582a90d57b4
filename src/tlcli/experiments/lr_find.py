"""``tlcli lr-find``, the learning-rate range test: the rate rises exponentially batch by batch
on what ``train`` would build (``tlcli.run.build.prepare``), each batch one ``train_one_epoch``,
and the rate where the smoothed loss falls fastest is suggested. Leaves no run folder behind."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tlcli.core.config import TrainConfig
from tlcli.core.errors import DataError, TlcliError
from tlcli.engine.loop import train_one_epoch
from tlcli.engine.observer import Observer
from tlcli.engine.state import Trainer
from tlcli.run.build import prepare

RANGE_TEST = "learning-rate range test"
SMOOTHING = 0.98  # of the loss, an exponential moving average


@dataclass
class LrFinding:
    suggested_lr: float
    lrs: list[float]
    losses: list[float]  # smoothed
    plot: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"suggested_lr": self.suggested_lr, "plot": self.plot, "lrs": self.lrs, "losses": self.losses, "notes": self.notes}


def lr_find(
    config: TrainConfig, *, start_lr: float = 1e-7, end_lr: float = 10.0, iterations: int = 100, out: Path | None = None,
    observer: Observer | None = None,
) -> LrFinding:
    """The learning-rate range test: raise the rate exponentially batch by batch, watch the loss.

    Suggests the rate where the smoothed loss falls fastest, for the current freeze state.
    """
    from tlcli.core.plots import plot_lr_find

    if not 0 < start_lr < end_lr:
        raise DataError(f"need 0 < start lr < end lr, got {start_lr} and {end_lr}")
    config = replace(config, optim=replace(config.optim, head_fit="epochs", lr=start_lr))
    observer = observer or Observer()
    prepared = prepare(config, observer=observer)
    lrs, losses = _sweep(prepared.trainer, start_lr, end_lr, iterations, observer)
    if len(losses) < 5:
        raise DataError("the loss diverged at once; lower the start lr")
    suggested = _steepest_descent(lrs, losses)
    notes = [f"stopped after {len(losses)} of {iterations} steps: the loss diverged"] if len(losses) < iterations else []
    finding = LrFinding(suggested, lrs, losses, notes=notes)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        title = f"{config.model.arch} on {prepared.data.source}, freeze {prepared.built.freeze_policy}"
        finding.plot = str(plot_lr_find(lrs, losses, suggested, out, title=title))
    return finding


def _sweep(trainer: Trainer, start_lr: float, end_lr: float, iterations: int, observer: Observer) -> tuple[list[float], list[float]]:
    """The rates tried and the smoothed losses at each, until ``iterations`` steps or divergence.
    Each parameter group keeps its ratio to the head's rate (the backbone multiplier)."""
    optimizer = trainer.optimizer
    ratios = [group["lr"] / start_lr for group in optimizer.param_groups]
    factor = (end_lr / start_lr) ** (1 / max(1, iterations - 1))
    lrs, losses, smoothed, best, step = [], [], 0.0, math.inf, 0
    observer.prepare(RANGE_TEST, step, iterations, "steps")
    while step < iterations:
        steps_before = step
        for batch in trainer.train_loader:
            if step >= iterations:
                return lrs, losses
            if not len(batch.labels):
                continue
            lr = start_lr * factor**step
            for group, ratio in zip(optimizer.param_groups, ratios):
                group["lr"] = lr * ratio
            try:  # one batch as an epoch of its own: the run's own step
                loss = train_one_epoch(trainer.with_batches([batch])).loss
            except TlcliError:  # a non-finite loss: the range has diverged
                loss = math.inf
            step += 1
            smoothed = SMOOTHING * smoothed + (1 - SMOOTHING) * loss
            value = smoothed / (1 - SMOOTHING**step)
            if not math.isfinite(value) or (step > 10 and value > 4 * best):
                observer.prepare(RANGE_TEST, step, step, "steps")
                return lrs, losses  # diverged: the rest of the range says nothing new
            observer.prepare(RANGE_TEST, step, iterations, "steps")
            best = min(best, value)
            lrs.append(lr)
            losses.append(value)
        if step == steps_before:
            raise DataError("no training image could be read for the range test; run 'tlcli data check'")
    return lrs, losses


def _steepest_descent(lrs: list[float], losses: list[float]) -> float:
    """Where the smoothed loss falls fastest against log(lr), between the noisy start and the
    lowest loss: past the minimum the loss is diverging, whatever its local slope."""
    start = max(1, len(losses) // 10)
    lowest = min(range(len(losses)), key=losses.__getitem__)
    candidates = range(start, min(lowest, len(losses) - 1))
    slopes = {i: (losses[i + 1] - losses[i - 1]) / (math.log(lrs[i + 1]) - math.log(lrs[i - 1])) for i in candidates}
    return lrs[min(slopes, key=slopes.__getitem__)] if slopes else lrs[lowest] / 10
