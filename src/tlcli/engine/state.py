"""What the loop passes around: an epoch's pass over a split (``Pass``), where a run stands
(``Progress``, saved in every checkpoint) and everything an epoch needs (``Trainer``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch.utils.data import DataLoader

from tlcli.engine.averaging import WeightAverage
from tlcli.engine.device import Precision


@dataclass
class Pass:
    """One pass over a loader: mean loss, accuracy, and what it saw."""

    loss: float
    accuracy: float
    images: int
    seconds: float
    skipped: list[str] = field(default_factory=list)
    logits: torch.Tensor | None = None  # evaluate(collect=True) only
    labels: torch.Tensor | None = None
    indices: torch.Tensor | None = None


@dataclass
class Progress:
    """Where a run stands; saved in every checkpoint so a resumed run picks up exactly here."""

    epoch: int = 0  # epochs completed in this phase
    step: int = 0  # optimizer steps in this phase
    best_metric: float | None = None
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    best_is_average: bool = False  # the best epoch's weights are the moving average's (best.pt holds them)
    # The best of this phase's own epochs, which early stopping waits on: phase 2's first epochs
    # may fall below phase 1 (best_metric) while they climb, and must not count as stagnation.
    phase_best: float | None = None

    def improved(self, value: float, monitor: str, *, than: float | None = None) -> bool:
        reference = self.best_metric if than is None else than
        if reference is None or math.isnan(reference):
            return not math.isnan(value)
        return value < reference if monitor.endswith("loss") else value > reference


@dataclass
class Trainer:
    """Everything an epoch needs (``train_one_epoch``, ``end_epoch``), built once by ``run.build``."""

    model: nn.Module
    train_loader: DataLoader
    val_loader: DataLoader | None
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    scheduler: object | None
    scheduler_per_batch: bool
    device: torch.device
    precision: Precision
    phase: int = 1
    seed: int = 0
    bn_train: bool = False
    keep_norm_statistics: bool = False
    accumulate: int = 1
    grad_clip: float = 0.0
    channels_last: bool = False
    monitor: str = "val_loss"
    patience: int = 0
    # The linear probe's epoch (``engine.probe.LinearProbe.epoch``), in place of train_one_epoch.
    full_batch_epoch: Callable[[], Pass] | None = None
    method: str = "adam"  # how the epochs train, recorded in each history row
    # What ``evaluate`` runs when it is not ``model``: the network inside DistributedDataParallel.
    evaluated: nn.Module | None = None
    average: WeightAverage | None = None  # phase 2's moving average, validated beside the weights

    def with_batches(self, batches) -> Trainer:
        """This trainer over ``batches`` (a list of them, or another loader), one step per batch
        and no schedule: sanity's and lr-find's steps, exactly a run's."""
        return replace(self, train_loader=batches, scheduler=None, scheduler_per_batch=False, accumulate=1)

    @property
    def eval_model(self) -> nn.Module:
        return self.model if self.evaluated is None else self.evaluated
