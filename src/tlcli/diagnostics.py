"""Checks before a long run: ``sanity`` (does the set-up learn at all?) and ``lr_find``.

Both build exactly what ``train`` would, through ``prepare`` (data, model, freeze state, inputs,
loss, optimiser, scaler), drive its ``train_step``, and leave no run folder behind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from tlcli.config import AugmentConfig, TrainConfig
from tlcli.engine.loop import batch_to_device, optimizer_step, train_step
from tlcli.engine.observer import Observer
from tlcli.errors import DataError, TlcliError
from tlcli.models.freeze import set_train_mode
from tlcli.prepare import Prepared, prepare

# The initial loss of an untrained head should be near ln(classes); further than this share away is suspect.
INITIAL_LOSS_TOLERANCE = 0.35
OVERFIT_TARGET = 0.99
RANGE_TEST = "learning-rate range test"


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class SanityReport:
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [vars(c) for c in self.checks]}


def _sanity_config(config: TrainConfig) -> TrainConfig:
    """What train would build, trained epoch by epoch on images (not cached features, not the
    linear probe), without augmentation or weight decay: the checks look at image batches and
    the optimiser's steps, and over-fitting needs the same images every pass."""
    return replace(config, augment=AugmentConfig(), optim=replace(config.optim, head_fit="epochs", weight_decay=0.0),
                   run=replace(config.run, cache_features="off", cache_images="off", workers=0))


def _fixed_batches(prepared: Prepared, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``count`` training batches, on the device, kept to be seen again and again."""
    batches = []
    for batch in prepared.inputs.train_loader:
        if len(batch.labels):
            batches.append(batch_to_device(batch, prepared.device, prepared.inputs.channels_last))
        if len(batches) == count:
            break
    if not batches:
        raise DataError("no training image could be read; run 'tlcli data check'")
    return batches


def run_sanity(config: TrainConfig, *, batches: int = 2, steps: int = 150, observer: Observer | None = None) -> SanityReport:
    """Shapes, one forward and backward pass, the initial loss, and over-fitting a tiny subset,
    with the model, loss, scaler and step of a real run (augmentation and weight decay off)."""
    prepared = prepare(_sanity_config(config), observer=observer)
    data, built, trainer = prepared.data, prepared.built, prepared.trainer
    fixed = _fixed_batches(prepared, batches)
    images, labels = fixed[0]
    expected = (built.preprocess.channels, built.preprocess.input_size, built.preprocess.input_size)
    checks = [
        Check("input shape", tuple(images.shape[1:]) == expected, f"batch {tuple(images.shape)}, model expects (N, {', '.join(map(str, expected))})"),
        Check("labels", int(labels.min()) >= 0 and int(labels.max()) < data.num_classes, f"in 0..{data.num_classes - 1}, {data.num_classes} classes"),
    ]
    set_train_mode(trainer.model, bn_train=trainer.bn_train, keep_norm_statistics=trainer.keep_norm_statistics)
    trainer.optimizer.zero_grad(set_to_none=True)
    with prepared.precision.autocast():
        logits = trainer.model(images)
    checks.append(Check("output shape", tuple(logits.shape) == (len(labels), data.num_classes),
                        f"{tuple(logits.shape)}, expected ({len(labels)}, {data.num_classes})"))
    try:
        loss, _ = train_step(trainer.model, images, labels, trainer.criterion, trainer.scaler, precision=prepared.precision)
    except TlcliError:
        loss = torch.tensor(math.nan)
    expected_loss = math.log(data.num_classes)
    close = abs(loss.item() - expected_loss) <= INITIAL_LOSS_TOLERANCE * expected_loss
    checks.append(Check("initial loss", close, f"{loss.item():.3f}, ln({data.num_classes}) = {expected_loss:.3f}"))
    trainable = [(n, p) for n, p in built.model.named_parameters() if p.requires_grad]
    with_grad = [n for n, p in trainable if p.grad is not None and p.grad.abs().sum() > 0]
    frozen_grad = [n for n, p in built.model.named_parameters() if not p.requires_grad and p.grad is not None]
    checks.append(Check("backward pass", math.isfinite(loss.item()) and bool(with_grad) and not frozen_grad,
                        f"gradients reach {len(with_grad)} of {len(trainable)} trainable tensors; frozen tensors with gradients: {len(frozen_grad)}"))
    trainer.optimizer.zero_grad(set_to_none=True)
    checks.append(_overfit(prepared, fixed, steps))
    return SanityReport(checks)


def _overfit(prepared: Prepared, fixed: list[tuple[torch.Tensor, torch.Tensor]], steps: int) -> Check:
    trainer = prepared.trainer
    accuracy, step = 0.0, 0
    for step in range(1, steps + 1):
        set_train_mode(trainer.model, bn_train=trainer.bn_train, keep_norm_statistics=trainer.keep_norm_statistics)
        for images, labels in fixed:
            train_step(trainer.model, images, labels, trainer.criterion, trainer.scaler, precision=prepared.precision)
            optimizer_step(trainer.model, trainer.optimizer, trainer.scaler)
        if step % 10 == 0 or step == steps:
            accuracy = _accuracy(trainer.model, fixed, prepared.precision)
            if accuracy >= OVERFIT_TARGET:
                break
    count = sum(len(labels) for _, labels in fixed)
    return Check("over-fit a tiny subset", accuracy >= OVERFIT_TARGET,
                 f"{accuracy:.1%} training accuracy on {count} images after {step} passes (needs {OVERFIT_TARGET:.0%})")


@torch.no_grad()
def _accuracy(model, batches, precision) -> float:
    model.eval()
    correct = total = 0
    for images, labels in batches:
        with precision.autocast():
            correct += int((model(images).argmax(1) == labels).sum())
        total += len(labels)
    return correct / total


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
    from tlcli.plots import plot_lr_find

    if not 0 < start_lr < end_lr:
        raise DataError(f"need 0 < start lr < end lr, got {start_lr} and {end_lr}")
    config = replace(config, optim=replace(config.optim, head_fit="epochs", lr=start_lr))
    observer = observer or Observer()
    prepared = prepare(config, observer=observer)
    trainer, data, built = prepared.trainer, prepared.data, prepared.built
    optimizer = trainer.optimizer
    # Each group keeps its ratio to the head's rate (the backbone multiplier) as the rate sweeps.
    ratios = [group["lr"] / start_lr for group in optimizer.param_groups]
    factor = (end_lr / start_lr) ** (1 / max(1, iterations - 1))
    lrs, losses = [], []
    smoothed, best, beta = 0.0, math.inf, 0.98
    step = 0
    observer.prepare(RANGE_TEST, step, iterations, "steps")
    while step < iterations:
        steps_before = step
        for batch in trainer.train_loader:
            if step >= iterations:
                break
            if not len(batch.labels):
                continue
            lr = start_lr * factor**step
            for group, ratio in zip(optimizer.param_groups, ratios):
                group["lr"] = lr * ratio
            set_train_mode(trainer.model, bn_train=trainer.bn_train, keep_norm_statistics=trainer.keep_norm_statistics)
            images, labels = batch_to_device(batch, prepared.device, trainer.channels_last)
            try:
                loss, _ = train_step(trainer.model, images, labels, trainer.criterion, trainer.scaler, precision=prepared.precision)
            except TlcliError:  # a non-finite loss: the range has diverged
                loss = torch.tensor(math.inf)
            optimizer_step(trainer.model, optimizer, trainer.scaler)
            step += 1
            smoothed = beta * smoothed + (1 - beta) * loss.item()
            value = smoothed / (1 - beta**step)
            if not math.isfinite(value) or (step > 10 and value > 4 * best):
                observer.prepare(RANGE_TEST, step, step, "steps")
                step = iterations  # diverged: the rest of the range says nothing new
                break
            observer.prepare(RANGE_TEST, step, iterations, "steps")
            best = min(best, value)
            lrs.append(lr)
            losses.append(value)
        if step == steps_before:
            raise DataError("no training image could be read for the range test; run 'tlcli data check'")
    notes = []
    if len(losses) < 5:
        raise DataError("the loss diverged at once; lower the start lr")
    suggested = _steepest_descent(lrs, losses)
    if len(losses) < iterations:
        notes.append(f"stopped after {len(losses)} of {iterations} steps: the loss diverged")
    finding = LrFinding(suggested, lrs, losses, notes=notes)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        finding.plot = str(plot_lr_find(lrs, losses, suggested, out, title=f"{config.model.arch} on {data.source}, freeze {built.freeze_policy}"))
    return finding


def _steepest_descent(lrs: list[float], losses: list[float]) -> float:
    """Where the smoothed loss falls fastest against log(lr), between the noisy start and the
    lowest loss: past the minimum the loss is diverging, whatever its local slope."""
    start = max(1, len(losses) // 10)
    lowest = min(range(len(losses)), key=losses.__getitem__)
    candidates = range(start, min(lowest, len(losses) - 1))
    slopes = {i: (losses[i + 1] - losses[i - 1]) / (math.log(lrs[i + 1]) - math.log(lrs[i - 1])) for i in candidates}
    return lrs[min(slopes, key=slopes.__getitem__)] if slopes else lrs[lowest] / 10
