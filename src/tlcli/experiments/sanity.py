"""``tlcli sanity``, a checklist before a long run: shapes, one forward and backward pass, the
initial loss near ln(classes), and over-fitting two batches. It builds exactly what ``train``
would (``tlcli.run.build.prepare``), drives its ``train_step`` and ``train_one_epoch``, and leaves
no run folder behind."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch

from tlcli.core.config import AugmentConfig, TrainConfig
from tlcli.core.errors import DataError, TlcliError
from tlcli.data.loading import Batch
from tlcli.engine.loop import batch_to_device, train_one_epoch, train_step
from tlcli.engine.observer import Observer
from tlcli.models.freeze import set_train_mode
from tlcli.run.build import Prepared, prepare

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


def _sanity_config(config: TrainConfig) -> TrainConfig:
    """What train would build, trained epoch by epoch on images (not cached features, not the
    linear probe), without augmentation or weight decay: the checks look at image batches and
    the optimiser's steps, and over-fitting needs the same images every pass."""
    return replace(config, augment=AugmentConfig(), optim=replace(config.optim, head_fit="epochs", weight_decay=0.0),
                   run=replace(config.run, cache_features="off", cache_images="off", workers=0))


def _fixed_batches(prepared: Prepared, count: int) -> list[Batch]:
    """The first ``count`` training batches that hold images, kept to be seen again and again."""
    batches = []
    for batch in prepared.inputs.train_loader:
        if len(batch.labels):
            batches.append(batch)
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
    images, labels = batch_to_device(fixed[0], prepared.device, prepared.inputs.channels_last)
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


def _overfit(prepared: Prepared, fixed: list[Batch], steps: int) -> Check:
    """Passes over the fixed batches, as epochs of a run whose loader is them, until they are learnt."""
    trainer = prepared.trainer.with_batches(fixed)
    accuracy, step = 0.0, 0
    for step in range(1, steps + 1):
        train_one_epoch(trainer)
        if step % 10 == 0 or step == steps:
            accuracy = _accuracy(trainer, fixed)
            if accuracy >= OVERFIT_TARGET:
                break
    count = sum(len(batch.labels) for batch in fixed)
    return Check("over-fit a tiny subset", accuracy >= OVERFIT_TARGET,
                 f"{accuracy:.1%} training accuracy on {count} images after {step} passes (needs {OVERFIT_TARGET:.0%})")


@torch.no_grad()
def _accuracy(trainer, batches: list[Batch]) -> float:
    trainer.model.eval()
    correct = total = 0
    for batch in batches:
        images, labels = batch_to_device(batch, trainer.device, trainer.channels_last)
        with trainer.precision.autocast():
            correct += int((trainer.model(images).argmax(1) == labels).sum())
        total += len(labels)
    return correct / total
