"""Checks before a long run: ``sanity`` (does the set-up learn at all?) and ``lr_find``.

Both build exactly what ``train`` would (data, model, freeze state, transforms, optimiser)
and leave no checkpoint behind; ``lr_find`` works on a copy of the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tlcli.config import TrainConfig
from tlcli.data.dataset import ImageData
from tlcli.data.loading import Batch, TransformedImages, collate, make_loader
from tlcli.data.sources import load_data
from tlcli.data.transforms import build_transform
from tlcli.engine.device import resolve_device, resolve_precision, seed_everything
from tlcli.engine.optim import build_optimizer, parameter_groups
from tlcli.errors import DataError
from tlcli.models.freeze import set_train_mode
from tlcli.models.registry import BuiltModel, build_model

# The initial loss of an untrained head should be near ln(classes); further than this share away is suspect.
INITIAL_LOSS_TOLERANCE = 0.35
OVERFIT_TARGET = 0.99


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


def _fixed_batches(data: ImageData, built: BuiltModel, *, count: int, batch_size: int, seed: int) -> list[Batch]:
    """The same ``count`` batches of training images every call, without augmentation."""
    images = data.splits["train"]
    if len(images) == 0:
        raise DataError("the training split is empty")
    dataset = TransformedImages(images, build_transform(built.preprocess), draft_size=built.preprocess.resize_size)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[: count * batch_size].tolist()
    samples = [dataset[i] for i in order]
    batches = [collate(samples[i : i + batch_size]) for i in range(0, len(samples), batch_size)]
    return [b for b in batches if len(b.labels)]


def run_sanity(config: TrainConfig, *, batches: int = 2, steps: int = 150) -> SanityReport:
    """Shapes, one forward and backward pass, the initial loss, and over-fitting a tiny subset."""
    seed_everything(config.run.seed)
    device = resolve_device(config.run.device)
    precision = resolve_precision(config.run.amp, device)
    checks: list[Check] = []
    data = load_data(config.data)
    built = build_model(config.model, num_classes=data.num_classes)
    model = built.model.to(device)
    fixed = _fixed_batches(data, built, count=batches, batch_size=config.run.batch_size, seed=config.run.seed)
    first = fixed[0]
    expected = (built.preprocess.channels, built.preprocess.input_size, built.preprocess.input_size)
    checks.append(Check("input shape", tuple(first.images.shape[1:]) == expected,
                        f"batch {tuple(first.images.shape)}, model expects (N, {', '.join(map(str, expected))})"))
    labels_ok = int(first.labels.min()) >= 0 and int(first.labels.max()) < data.num_classes
    checks.append(Check("labels", labels_ok, f"in 0..{data.num_classes - 1}, {data.num_classes} classes"))

    criterion = nn.CrossEntropyLoss()
    set_train_mode(model, bn_train=config.model.bn_train)
    images, labels = first.images.to(device), first.labels.to(device)
    with precision.autocast():
        logits = model(images)
        loss = criterion(logits.float(), labels)
    checks.append(Check("output shape", tuple(logits.shape) == (len(labels), data.num_classes),
                        f"{tuple(logits.shape)}, expected ({len(labels)}, {data.num_classes})"))
    expected_loss = math.log(data.num_classes)
    close = abs(loss.item() - expected_loss) <= INITIAL_LOSS_TOLERANCE * expected_loss
    checks.append(Check("initial loss", close, f"{loss.item():.3f}, ln({data.num_classes}) = {expected_loss:.3f}"))
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    with_grad = [n for n, p in trainable if p.grad is not None and p.grad.abs().sum() > 0]
    frozen_grad = [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
    checks.append(Check("backward pass", math.isfinite(loss.item()) and bool(with_grad) and not frozen_grad,
                        f"gradients reach {len(with_grad)} of {len(trainable)} trainable tensors; frozen tensors with gradients: {len(frozen_grad)}"))
    model.zero_grad(set_to_none=True)

    optimizer = build_optimizer(parameter_groups(model, built.head_name, config.optim), replace(config.optim, weight_decay=0.0))
    accuracy = 0.0
    for step in range(1, steps + 1):
        set_train_mode(model, bn_train=config.model.bn_train)
        for batch in fixed:
            optimizer.zero_grad(set_to_none=True)
            with precision.autocast():
                batch_loss = criterion(model(batch.images.to(device)).float(), batch.labels.to(device))
            batch_loss.backward()
            optimizer.step()
        if step % 10 == 0 or step == steps:
            accuracy = _accuracy(model, fixed, device, precision)
            if accuracy >= OVERFIT_TARGET:
                break
    count = sum(len(b.labels) for b in fixed)
    checks.append(Check("over-fit a tiny subset", accuracy >= OVERFIT_TARGET,
                        f"{accuracy:.1%} training accuracy on {count} images after {step} passes (needs {OVERFIT_TARGET:.0%})"))
    return SanityReport(checks)


@torch.no_grad()
def _accuracy(model, batches, device, precision) -> float:
    model.eval()
    correct = total = 0
    for batch in batches:
        with precision.autocast():
            predicted = model(batch.images.to(device)).argmax(1).cpu()
        correct += int((predicted == batch.labels).sum())
        total += len(batch.labels)
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
    config: TrainConfig, *, start_lr: float = 1e-7, end_lr: float = 10.0, iterations: int = 100, out: Path | None = None
) -> LrFinding:
    """The learning-rate range test: raise the rate exponentially batch by batch, watch the loss.

    Suggests the rate where the smoothed loss falls fastest, for the current freeze state.
    """
    from tlcli.report.plots import plot_lr_find

    if not 0 < start_lr < end_lr:
        raise DataError(f"need 0 < --start-lr < --end-lr, got {start_lr} and {end_lr}")
    seed_everything(config.run.seed)
    device = resolve_device(config.run.device)
    precision = resolve_precision(config.run.amp, device)
    data = load_data(config.data)
    built = build_model(config.model, num_classes=data.num_classes)
    model = built.model.to(device)
    loader = make_loader(TransformedImages(data.splits["train"], build_transform(built.preprocess, config.augment), draft_size=built.preprocess.resize_size),
                         batch_size=config.run.batch_size, shuffle=True, workers=0, seed=config.run.seed)
    optim = replace(config.optim, lr=start_lr)
    optimizer = build_optimizer(parameter_groups(model, built.head_name, optim), optim)
    # Each group keeps its ratio to the head's rate (--backbone-lr-mult) as the rate sweeps.
    ratios = [group["lr"] / start_lr for group in optimizer.param_groups]
    factor = (end_lr / start_lr) ** (1 / max(1, iterations - 1))
    criterion = nn.CrossEntropyLoss()
    lrs, losses = [], []
    smoothed, best, beta = 0.0, math.inf, 0.98
    step = 0
    while step < iterations:
        steps_before = step
        for batch in loader:
            if step >= iterations:
                break
            if not len(batch.labels):
                continue
            lr = start_lr * factor**step
            for group, ratio in zip(optimizer.param_groups, ratios):
                group["lr"] = lr * ratio
            set_train_mode(model, bn_train=config.model.bn_train)
            optimizer.zero_grad(set_to_none=True)
            with precision.autocast():
                loss = criterion(model(batch.images.to(device)).float(), batch.labels.to(device))
            loss.backward()
            optimizer.step()
            step += 1
            smoothed = beta * smoothed + (1 - beta) * loss.item()
            value = smoothed / (1 - beta**step)
            if not math.isfinite(value) or (step > 10 and value > 4 * best):
                step = iterations  # diverged: the rest of the range says nothing new
                break
            best = min(best, value)
            lrs.append(lr)
            losses.append(value)
        if step == steps_before:
            raise DataError("no training image could be read for the range test; run 'tlcli data check'")
    notes = []
    if len(losses) < 5:
        raise DataError("the loss diverged at once; lower --start-lr")
    # Steepest descent of the smoothed loss against log(lr), between the noisy start and the
    # lowest loss: past the minimum the loss is diverging, whatever its local slope.
    start = max(1, len(losses) // 10)
    lowest = min(range(len(losses)), key=losses.__getitem__)
    candidates = range(start, min(lowest, len(losses) - 1))
    slopes = {i: (losses[i + 1] - losses[i - 1]) / (math.log(lrs[i + 1]) - math.log(lrs[i - 1])) for i in candidates}
    suggested = lrs[min(slopes, key=slopes.__getitem__)] if slopes else lrs[lowest] / 10
    if len(losses) < iterations:
        notes.append(f"stopped after {len(losses)} of {iterations} steps: the loss diverged")
    finding = LrFinding(suggested, lrs, losses, notes=notes)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        finding.plot = str(plot_lr_find(lrs, losses, suggested, out, title=f"{config.model.arch} on {data.source}, freeze {built.freeze_policy}"))
    return finding
