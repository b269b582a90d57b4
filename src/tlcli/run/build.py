"""Everything a run needs, built in one place and one order: seed, device, precision, data,
model, inputs, loss, optimiser, schedule, scaler.

``prepare`` is what train, finetune, resume, sanity, lr-find and the bench call, so each of them
trains exactly what ``tlcli train`` would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from tlcli.run.checkpoint import checkpoint_model_config, model_from_checkpoint, restore_training_state
from tlcli.core.config import BACKBONE_LR_CANDIDATES, OptimConfig, TrainConfig, check_config
from tlcli.data.dataset import ImageData
from tlcli.data.sources import check_source_exists, load_data
from tlcli.engine.averaging import WeightAverage, steps_decay
from tlcli.engine.device import Precision, resolve_device, resolve_precision, seed_everything, set_determinism
from tlcli.engine.distributed import local_device, unwrap, world_size, wrap
from tlcli.engine.loop import Observer
from tlcli.engine.state import Progress, Trainer
from tlcli.engine.optim import build_criterion, build_optimizer, build_scheduler, parameter_groups
from tlcli.engine.probe import ProbeChoice
from tlcli.engine.trial import TrialResult, choose_backbone_rate
from tlcli.core.errors import ConfigError, DataError, ModelError, TlcliError, WeightsError
from tlcli.run.features import NotCacheable, feature_head
from tlcli.core.host import allocator_tuning, cap_threads
from tlcli.models.freeze import apply_freeze, keeps_norm_statistics
from tlcli.models.registry import BuiltModel, build_model, check_weights_obtainable
from tlcli.run.inputs import TrainingInputs, build_inputs, linear_probe, wants_channels_last


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
    trial: TrialResult | None = None  # phase 2's trial of backbone learning rates, when it ran

    def resolved_config(self) -> TrainConfig:
        """The configuration with every automatic value as this run resolved it (config.json).
        Checkpoints keep the asked one, so a resumed run resolves "auto" on its own machine."""
        model, run, built = self.config.model, self.config.run, self.built
        return replace(
            self.config,
            model=replace(model, num_classes=built.num_classes, weights=built.weights, freeze=built.freeze_policy,
                          input_size=built.preprocess.input_size, dropout=built.dropout),
            run=replace(run, device=str(self.device), amp=self.precision.name, channels_last=self.channels_last, workers=self.inputs.workers),
        )


def tune_process(config: TrainConfig) -> str:
    seed_everything(config.run.seed)
    set_determinism(config.run.deterministic)
    allocator = allocator_tuning()
    return f"{cap_threads()} threads, allocator {allocator}"


def check_before_data(config: TrainConfig, start: Start = Start()) -> None:
    """Refuse, before a single image is read, what needs no data to refuse: a value outside its
    choices or range, a device or precision this machine lacks, a weights file that is not there,
    what the network's structure rules out (a freeze policy beyond its stages, a feature cache or
    linear probe its trainable layers forbid), and ImageNet weights neither cached nor
    downloadable now. Bad values are ConfigErrors; a data folder or CSV file that is not there
    is said before the weights are looked for."""
    check_config(config)
    resolve_precision(config.run.amp, resolve_device(config.run.device))
    weights = config.model.weights
    if start.checkpoint is None and weights and weights.lower() not in ("imagenet", "none") and not Path(weights).is_file():
        raise WeightsError(f"weights file {weights} does not exist")
    if not start.resume:
        _check_structure(config, start)
    if start.checkpoint is None:
        check_source_exists(config.data.source)
        check_weights_obtainable(config.model)


def _check_structure(config: TrainConfig, start: Start) -> None:
    """The network built on the meta device (no memory, no weights: milliseconds) under the
    run's freeze policy; the real one needs the data's number of classes."""
    model = config.model if start.checkpoint is None else checkpoint_model_config(start.checkpoint, freeze=start.freeze or "none")
    try:
        with torch.device("meta"):
            built = build_model(model, load_weights=False)
    except ModelError as exc:
        raise ConfigError(str(exc)) from None
    except TlcliError:
        raise
    except Exception:  # a network that reads tensor values as it is built (timm's .item()): its real build checks it
        return
    run, optim = config.run, config.optim
    if start.checkpoint is not None or (run.cache_features != "on" and optim.head_fit != "probe"):
        return
    asked = "--cache-features on" if run.cache_features == "on" else "--head-fit probe"
    if run.cache_features == "off":
        raise ConfigError("--head-fit probe fits the head on cached features, which --cache-features off turns off")
    try:
        head = feature_head(built.model, built.head_name, bn_train=config.model.bn_train).head
    except NotCacheable as exc:
        raise ConfigError(f"{asked} needs a frozen backbone in inference mode, but {exc}") from None
    if optim.head_fit == "probe" and not isinstance(head, torch.nn.Linear):
        raise ConfigError(f"--head-fit probe needs a linear head; {config.model.arch}'s is a {type(head).__name__}")


# What only an optimiser stepping epoch by epoch uses; the probe is a full-batch L-BFGS fit.
_OPTIMISER_SETTINGS = ("optimizer", "lr", "momentum", "nesterov", "schedule", "warmup_epochs", "step_size", "gamma", "grad_clip", "accumulate")


def _ignored_by_probe(optim: OptimConfig) -> list[str]:
    """A note naming the optimiser settings a linear probe leaves unused, when any was changed
    (an optimizer equal to the default cannot be told from none given)."""
    default = OptimConfig()
    changed = [f"--{name.replace('_', '-')} {getattr(optim, name)}" for name in _OPTIMISER_SETTINGS if getattr(optim, name) != getattr(default, name)]
    if not changed:
        return []
    return [f"phase 1 fits the head as a linear probe (L-BFGS, its L2 strength chosen on the validation split), so {', '.join(changed)} "
            "do not apply; add --head-fit epochs to train the head with them, or give them to finetune"]


def prepare(config: TrainConfig, *, start: Start = Start(), observer: Observer | None = None, checked: bool = False) -> Prepared:
    """``checked``: the caller has run ``check_before_data`` already (before taking its run folder)."""
    if not checked:
        check_before_data(config, start)
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
        notes += _ignored_by_probe(config.optim)
    else:
        config, (optimizer, scheduler, per_batch, steps_per_epoch) = _optimisation(config, inputs, built, device)
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
    trial = None
    if probe is None:
        untried = config.optim.backbone_lr_mult is None and inputs.val_loader is None
        config, trial = _phase2_nets(config, trainer, built, inputs, device, start)
        if untried:
            notes.append(f"no validation images: phase 2 cannot try backbone rates, validate a moving average or choose a mix "
                         f"with phase 1; the backbone trains at x{config.optim.backbone_lr_mult:g} the head's rate")
        rate = f" (backbone x{config.optim.backbone_lr_mult:g})" if start.phase > 1 else ""
        method = f"{config.optim.optimizer}, lr {config.optim.lr:.3g}{rate}, {config.optim.schedule} schedule"
    progress = (restore_training_state(start.checkpoint, trainer, total_steps=config.run.epochs * steps_per_epoch)
                if start.resume else Progress())
    return Prepared(config, data, built, device, precision, channels_last, inputs, trainer, progress, method, keep_statistics,
                    head_fit=probe[1] if probe else None, notes=notes, process=process, processes=_processes(config), trial=trial)


def _optimisation(config: TrainConfig, inputs: TrainingInputs, built: BuiltModel, device: torch.device):
    """(config with the learning rate resolved, (optimiser, schedule, whether it steps per batch, steps per epoch))."""
    # A rate still to be chosen by phase 2's trial starts at its gentlest candidate.
    optim = config.optim if config.optim.backbone_lr_mult is not None else replace(config.optim, backbone_lr_mult=BACKBONE_LR_CANDIDATES[0])
    optimizer = build_optimizer(parameter_groups(built.model, built.head_name, optim), optim, fused=device.type == "cuda")
    config = replace(config, optim=replace(config.optim, lr=optimizer.param_groups[0]["lr"]))  # the resolved default
    steps_per_epoch = math.ceil(len(inputs.train_loader) / config.optim.accumulate)
    scheduler, per_batch = build_scheduler(optimizer, config.optim, epochs=config.run.epochs, steps_per_epoch=steps_per_epoch,
                                           maximize=config.run.monitor == "val_acc" and inputs.val_loader is not None)
    return config, (optimizer, scheduler, per_batch, steps_per_epoch)


def _phase2_nets(config: TrainConfig, trainer: Trainer, built: BuiltModel, inputs: TrainingInputs, device: torch.device,
                 start: Start) -> tuple[TrainConfig, TrialResult | None]:
    """Phase 2's choices before its first epoch: the backbone's learning rate by a trial on the
    validation split when none was given (the trainer then gets the optimiser and schedule of the
    chosen rate), and the moving average of the weights, updated by each optimiser step."""
    optim, trial = config.optim, None
    if optim.backbone_lr_mult is None:
        has_backbone = any(group["name"] == "backbone" for group in trainer.optimizer.param_groups)
        if has_backbone and trainer.val_loader is not None:
            trial = choose_backbone_rate(trainer, built.model, BACKBONE_LR_CANDIDATES, lambda mult: _optimisation(
                replace(config, optim=replace(optim, backbone_lr_mult=mult)), inputs, built, device)[1][0])  # its schedule sets epoch 1's rate
        config = replace(config, optim=replace(optim, backbone_lr_mult=trial.chosen if trial else BACKBONE_LR_CANDIDATES[0]))
        if config.optim.backbone_lr_mult != BACKBONE_LR_CANDIDATES[0]:  # the trainer's optimiser was built at the gentlest
            _, (trainer.optimizer, trainer.scheduler, _, _) = _optimisation(config, inputs, built, device)
    if config.optim.ema and trainer.val_loader is not None:  # an average nothing validates would never be used
        trainer.average = WeightAverage(built.model, decay=steps_decay(math.ceil(len(trainer.train_loader) / config.optim.accumulate)))
        trainer.optimizer.register_step_post_hook(trainer.average.update)
        if start.resume and start.checkpoint.get("average"):
            trainer.average.load_state_dict(start.checkpoint["average"])
    return config, trial


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
    checkpoint = start.checkpoint
    if start.resume and "trained_state_dict" in checkpoint:  # a best.pt holding the moving average stands in for last.pt
        checkpoint = {**checkpoint, "state_dict": checkpoint["trained_state_dict"]}
    built = model_from_checkpoint(checkpoint)
    if start.freeze is not None:
        built.frozen = apply_freeze(built.model, start.freeze, built.head_name)
        built.freeze_policy = start.freeze
    return built
