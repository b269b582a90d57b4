"""Everything a run needs, built in one place and one order: seed, device, precision, data,
model, inputs, loss, optimiser, schedule, scaler.

``prepare`` is what train, finetune, resume, sanity, lr-find and the bench call, so each of them
trains exactly what ``tlcli train`` would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from tlcli.checkpoint import model_from_checkpoint, restore_training_state
from tlcli.config import TrainConfig, check_choices
from tlcli.data.dataset import ImageData
from tlcli.data.sources import load_data
from tlcli.engine.device import Precision, resolve_device, resolve_precision, seed_everything, set_determinism
from tlcli.engine.distributed import local_device, unwrap, world_size, wrap
from tlcli.engine.loop import Observer, Progress, Trainer
from tlcli.engine.optim import build_criterion, build_optimizer, build_scheduler, parameter_groups
from tlcli.engine.probe import ProbeChoice
from tlcli.errors import ConfigError, DataError
from tlcli.host import allocator_tuning, cap_threads
from tlcli.models.freeze import apply_freeze, keeps_norm_statistics
from tlcli.models.registry import BuiltModel, build_model
from tlcli.pipeline import TrainingInputs, build_inputs, linear_probe, wants_channels_last


@dataclass
class Start:
    """Where a run begins: fresh, resumed from its own checkpoint, or phase 2 of another."""

    phase: int = 1
    checkpoint: dict[str, Any] | None = None  # weights (and, resuming, all state) to start from
    resume: bool = False
    freeze: str | None = None  # finetune's new policy


@dataclass
class Prepared:
    config: TrainConfig  # with the learning rate resolved
    data: ImageData
    built: BuiltModel
    device: torch.device
    precision: Precision
    channels_last: bool  # the network's memory format (its inputs: see inputs.channels_last)
    inputs: TrainingInputs
    trainer: Trainer
    progress: Progress
    method: str  # how the epochs train, for the log and the history
    keep_statistics: bool  # normalisation layers keep their running statistics
    head_fit: ProbeChoice | None = None  # the linear probe's choice, when the head is fitted as one
    notes: list[str] = field(default_factory=list)
    process: str = ""  # threads and allocator, for the log
    processes: str = "1 process"  # how many train together, and the batch they make, for the log


def tune_process(config: TrainConfig) -> str:
    seed_everything(config.run.seed)
    set_determinism(config.run.deterministic)
    allocator = allocator_tuning()
    return f"{cap_threads()} threads, allocator {allocator}"


def prepare(config: TrainConfig, *, start: Start = Start(), observer: Observer | None = None) -> Prepared:
    check_choices(config)
    observer = observer or Observer()
    process = tune_process(config)
    device = local_device(resolve_device(config.run.device))
    precision = resolve_precision(config.run.amp, device)
    data = load_data(config.data)
    built = _model(config, start, data)
    notes = [*data.notes, *(f"skipped unreadable image {bad.path}: {bad.reason}" for bad in data.bad_files),
             *(f"skipped {link.path}: {link.reason}" for link in data.skipped_links), *built.notes]
    if not len(data.splits["val"]):
        notes.append(f"no validation images: best.pt and early stopping follow the training loss instead of {config.run.monitor}")
    model = built.model.to(device)
    channels_last = wants_channels_last(config.run.channels_last, model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    inputs = build_inputs(data, built, model, config, device=device, precision=precision, channels_last=channels_last, observer=observer)
    criterion = build_criterion(config.optim, data.splits["train"].labels, data.num_classes).to(device)
    probe = linear_probe(inputs, config, criterion, device, resumed=start.checkpoint.get("head_fit") if start.resume else None)
    if probe is not None:
        optimizer, scheduler, per_batch, steps_per_epoch = probe[0].optimizer, None, False, 1
        method = probe[1].describe()
    else:
        optimizer = build_optimizer(parameter_groups(model, built.head_name, config.optim), config.optim, fused=device.type == "cuda")
        config = replace(config, optim=replace(config.optim, lr=optimizer.param_groups[0]["lr"]))  # the resolved default
        steps_per_epoch = math.ceil(len(inputs.train_loader) / config.optim.accumulate)
        scheduler, per_batch = build_scheduler(optimizer, config.optim, epochs=config.run.epochs, steps_per_epoch=steps_per_epoch,
                                               maximize=config.run.monitor == "val_acc" and inputs.val_loader is not None)
        method = f"{config.optim.optimizer}, lr {config.optim.lr:.3g}, {config.optim.schedule} schedule"
    keep_statistics = keeps_norm_statistics(bn_train=config.model.bn_train, weights=built.weights, phase=start.phase)
    # The probe is one full-batch fit, the same in every process: nothing to wrap.
    trained = inputs.model if probe else wrap(inputs.model, device, sync_bn=config.run.sync_bn)
    evaluated = unwrap(trained)
    if config.run.compile:
        trained, evaluated = torch.compile(trained), None if evaluated is trained else torch.compile(evaluated)
    trainer = Trainer(
        trained, inputs.train_loader, inputs.val_loader, criterion,
        optimizer, precision.scaler(), scheduler, per_batch, device, precision, evaluated=evaluated,
        phase=start.phase, seed=config.run.seed, bn_train=config.model.bn_train, keep_norm_statistics=keep_statistics,
        accumulate=config.optim.accumulate, grad_clip=config.optim.grad_clip, channels_last=inputs.channels_last,
        monitor=config.run.monitor, patience=config.run.patience,
        full_batch_epoch=probe[0].epoch if probe else None, method="lbfgs probe" if probe else config.optim.optimizer,
    )
    progress = (restore_training_state(start.checkpoint, trainer, total_steps=config.run.epochs * steps_per_epoch)
                if start.resume else Progress())
    return Prepared(config, data, built, device, precision, channels_last, inputs, trainer, progress, method, keep_statistics,
                    head_fit=probe[1] if probe else None, notes=notes, process=process, processes=_processes(config))


def _processes(config: TrainConfig) -> str:
    """--batch-size is per process; the learning rate is the one given, whatever the global batch."""
    count, batch = world_size(), config.run.batch_size
    if count == 1:
        return "1 process"
    return (f"{count} processes (world size {count}), batch {batch} per process, global batch {count * batch}; "
            "the learning rate is not scaled with the global batch")


def _model(config: TrainConfig, start: Start, data: ImageData) -> BuiltModel:
    if start.checkpoint is None:
        asked = config.model.num_classes
        if asked is not None and asked != data.num_classes:
            raise ConfigError(f"--num-classes {asked} does not match the data's {data.num_classes} classes "
                              f"({', '.join(data.classes[:8])}{', ...' if data.num_classes > 8 else ''}); leave it out when training")
        return build_model(config.model, num_classes=data.num_classes)
    if data.classes != start.checkpoint["classes"]:
        raise DataError(
            f"the data's classes ({', '.join(data.classes[:8])}...) differ from the checkpoint's "
            f"({', '.join(start.checkpoint['classes'][:8])}...); phase 2 and resume need the same data"
        )
    built = model_from_checkpoint(start.checkpoint)
    if start.freeze is not None:
        built.frozen = apply_freeze(built.model, start.freeze, built.head_name)
        built.freeze_policy = start.freeze
    return built
