"""``train``, ``finetune`` and ``resume``: set a run up, hand it to ``fit``, write what it made.

All three go through ``_run``; they differ only in where the weights, the freeze policy, the
optimiser state and the history start from.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from tlcli.checkpoint import atomic_save, load_checkpoint, model_from_checkpoint, stamp
from tlcli.config import HEAD_FITS, FinetuneConfig, TrainConfig
from tlcli.data.dataset import ImageData
from tlcli.data.sources import load_data
from tlcli.engine.device import (
    resolve_device,
    resolve_precision,
    restore_rng_state,
    rng_state,
    seed_everything,
    set_determinism,
)
from tlcli.engine.distributed import is_main_process
from tlcli.engine.host import allocator_tuning, cap_threads
from tlcli.engine.loop import Observer, Progress, Trainer, evaluate, fit
from tlcli.engine.optim import build_criterion, build_optimizer, build_scheduler, continue_schedule, parameter_groups
from tlcli.errors import DataError, TlcliError
from tlcli.models.freeze import apply_freeze, count_parameters, keeps_norm_statistics
from tlcli.models.registry import BuiltModel, build_model
from tlcli.pipeline import build_inputs, linear_probe, wants_channels_last
from tlcli.report.plots import plot_curves, pyplot
from tlcli.runs import RunFolder, checkpoints_root, default_run_name, resolve_checkpoint


@dataclass
class RunResult:
    run_dir: Path
    phase: int
    monitor: str
    progress: Progress
    history: list[dict]
    parameters: dict[str, int]
    start: dict[str, float] | None = None  # finetune: validation before phase 2's first step
    notes: list[str] = field(default_factory=list)
    head_fit: dict[str, Any] | None = None  # the linear probe's choice, when phase 1 was fitted as one

    @property
    def files(self) -> dict[str, str]:
        names = ("best.pt", "last.pt", "config.json", "history.csv", "curves.png", "log.txt")
        return {name: str(self.run_dir / name) for name in names if (self.run_dir / name).exists()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "phase": self.phase,
            "monitor": self.monitor,
            "epochs_run": self.progress.epoch,
            "best_epoch": self.progress.best_epoch,
            "best_metric": self.progress.best_metric,
            "stopped_early": self.progress.stopped_early,
            "final": self.history[-1] if self.history else None,
            "start": self.start,
            "parameters": self.parameters,
            "files": self.files,
            "notes": self.notes,
            "head_fit": self.head_fit,
        }


@dataclass
class _Start:
    """Where a run begins: fresh, resumed from its own checkpoint, or phase 2 of another."""

    config: TrainConfig
    run_dir: Path
    fresh: bool
    phase: int = 1
    parent: str | None = None
    checkpoint: dict[str, Any] | None = None  # weights (and, resuming, all state) to start from
    resume_state: bool = False
    freeze: str | None = None  # finetune's new policy
    history: list[dict] = field(default_factory=list)


def train(config: TrainConfig, *, observer: Observer | None = None) -> RunResult:
    run_dir = Path(config.run.out) if config.run.out else checkpoints_root() / default_run_name(config.data.source, config.model.arch)
    return _run(_Start(config, run_dir, fresh=True), observer or Observer())


def resume(path: Path, *, epochs: int | None = None, observer: Observer | None = None) -> RunResult:
    checkpoint = load_checkpoint(path)
    last = Path(path).parent / "last.pt"
    if Path(path).name != "last.pt" and last.exists() and load_checkpoint(last)["progress"]["epoch"] > checkpoint["progress"]["epoch"]:
        raise TlcliError(f"{path} is behind {last}; resume from {last}, or resuming would discard the epochs after it")
    config = TrainConfig.from_dict(checkpoint["config"])
    if epochs is not None:
        config = replace(config, run=replace(config.run, epochs=epochs))
    if checkpoint["progress"]["epoch"] >= config.run.epochs and not checkpoint["progress"]["stopped_early"]:
        raise TlcliError(f"{path} already completed {config.run.epochs} epochs; raise --epochs to train further")
    start = _Start(
        config, Path(path).parent, fresh=False, phase=checkpoint["phase"], parent=checkpoint.get("parent"),
        checkpoint=checkpoint, resume_state=True, history=list(checkpoint["history"]),
    )
    return _run(start, observer or Observer())


def finetune(config: FinetuneConfig, *, observer: Observer | None = None) -> RunResult:
    source = resolve_checkpoint(config.source)
    checkpoint = load_checkpoint(source)
    phase1 = TrainConfig.from_dict(checkpoint["config"])
    optim = replace(phase1.optim, **{"lr": config.lr, "backbone_lr_mult": config.backbone_lr_mult, **dict(config.optim_overrides)})
    # Phase 1's --cache-features on would refuse the unfrozen backbone of phase 2.
    run = replace(phase1.run, **{"epochs": config.epochs, "out": None, "overwrite": False, "cache_features": "auto", **dict(config.run_overrides)})
    train_config = replace(phase1, model=replace(phase1.model, bn_train=config.bn_train), optim=optim, run=run,
                           augment=replace(phase1.augment, **dict(config.augment_overrides)))
    run_dir = Path(run.out) if run.out else source.parent.parent / default_run_name(phase1.data.source, phase1.model.arch, "-ft")
    freeze = "none" if config.unfreeze == "all" else config.unfreeze
    start = _Start(
        train_config, run_dir, fresh=True, phase=checkpoint["phase"] + 1, parent=str(source),
        checkpoint=checkpoint, freeze=freeze, history=list(checkpoint["history"]),
    )
    return _run(start, observer or Observer())


# Drawing curves.png takes a quarter of a second; short epochs redraw it at most this often,
# and once more when the run ends.
CURVES_EVERY_S = 10.0
TENSORBOARD_SCALARS = {
    "loss/train": "train_loss", "loss/val": "val_loss", "accuracy/train": "train_acc", "accuracy/val": "val_acc", "lr": "lr",
}


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TlcliError("--tensorboard needs the tensorboard package: pip install 'tlcli[tensorboard]'") from None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def _check_classes(data: ImageData, checkpoint: dict[str, Any]) -> None:
    if data.classes != checkpoint["classes"]:
        raise DataError(
            f"the data's classes ({', '.join(data.classes[:8])}...) differ from the checkpoint's "
            f"({', '.join(checkpoint['classes'][:8])}...); phase 2 and resume need the same data"
        )


def _model(start: _Start, data: ImageData) -> BuiltModel:
    if start.checkpoint is None:
        return build_model(start.config.model, num_classes=data.num_classes)
    _check_classes(data, start.checkpoint)
    built = model_from_checkpoint(start.checkpoint)
    if start.freeze is not None:
        built.frozen = apply_freeze(built.model, start.freeze, built.head_name)
        built.freeze_policy = start.freeze
    return built


def _training_state(model: torch.nn.Module, trainer: Trainer) -> dict[str, Any]:
    """What a resumed run needs besides the history: weights, optimiser, schedule, scaler, RNG."""
    return {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
        "scaler": trainer.scaler.state_dict(),
        "rng": rng_state(),
    }


def _run(start: _Start, observer: Observer) -> RunResult:
    config = start.config
    run = config.run
    if run.epochs < 1:
        raise TlcliError(f"--epochs must be at least 1, got {run.epochs}")
    if run.monitor not in ("val_loss", "val_acc"):
        raise TlcliError(f"unknown --monitor '{run.monitor}'; choose val_loss or val_acc")
    if config.optim.head_fit not in HEAD_FITS:
        raise TlcliError(f"unknown --head-fit '{config.optim.head_fit}'; choose one of {', '.join(HEAD_FITS)}")
    seed_everything(run.seed)
    set_determinism(run.deterministic)
    allocator = allocator_tuning()
    threads = cap_threads()
    device = resolve_device(run.device)
    precision = resolve_precision(run.amp, device)
    data = load_data(config.data)
    built = _model(start, data)
    notes = [*data.notes, *(f"skipped unreadable image {bad.path}: {bad.reason}" for bad in data.bad_files), *built.notes]
    preprocess = built.preprocess
    if not len(data.splits["val"]):
        notes.append(f"no validation images: best.pt and early stopping follow the training loss instead of {run.monitor}")

    model = built.model.to(device)
    channels_last = wants_channels_last(run.channels_last, model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    inputs = build_inputs(data, built, model, config, device=device, precision=precision, channels_last=channels_last, observer=observer)
    train_loader, val_loader = inputs.train_loader, inputs.val_loader
    forward = torch.compile(inputs.model) if run.compile else inputs.model
    criterion = build_criterion(config.optim, data.splits["train"].labels, data.num_classes).to(device)
    probe = linear_probe(inputs, config, criterion, device, resumed=(start.checkpoint or {}).get("head_fit") if start.resume_state else None)
    if probe is not None:
        optimizer, scheduler, per_batch, steps_per_epoch = probe[0].optimizer, None, False, 1
        method = probe[1].describe()
    else:
        optimizer = build_optimizer(parameter_groups(model, built.head_name, config.optim), config.optim, fused=device.type == "cuda")
        config = replace(config, optim=replace(config.optim, lr=optimizer.param_groups[0]["lr"]))  # the resolved default
        steps_per_epoch = math.ceil(len(train_loader) / config.optim.accumulate)
        scheduler, per_batch = build_scheduler(
            optimizer, config.optim, epochs=run.epochs, steps_per_epoch=steps_per_epoch, maximize=run.monitor == "val_acc" and val_loader is not None
        )
        method = f"{config.optim.optimizer}, lr {config.optim.lr:.3g}, {config.optim.schedule} schedule"
    scaler = precision.scaler()
    progress = Progress()
    if start.resume_state:
        state = start.checkpoint
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
            continue_schedule(scheduler, optimizer, total_steps=run.epochs * steps_per_epoch)
        scaler.load_state_dict(state["scaler"])
        progress = Progress(**state["progress"])
        progress.stopped_early = False
        restore_rng_state(state["rng"])
    keep_statistics = keeps_norm_statistics(bn_train=config.model.bn_train, weights=built.weights, phase=start.phase)
    trainer = Trainer(
        forward, train_loader, val_loader, criterion, optimizer, scaler, scheduler, per_batch, device, precision,
        phase=start.phase, seed=run.seed, bn_train=config.model.bn_train, keep_norm_statistics=keep_statistics,
        accumulate=config.optim.accumulate, grad_clip=config.optim.grad_clip, channels_last=inputs.channels_last,
        monitor=run.monitor, patience=run.patience,
        full_batch_epoch=probe[0].epoch if probe else None, method="lbfgs probe" if probe else config.optim.optimizer,
    )
    history = list(start.history)
    # Epoch numbers run on across phases; a resumed phase continues its own numbering.
    offset = max((row["epoch"] for row in history if row["phase"] < start.phase), default=0)
    parameters = count_parameters(model).to_dict()
    folder = RunFolder(start.run_dir)
    with folder.open(fresh=start.fresh, overwrite=run.overwrite) if is_main_process() else folder:
        result = RunResult(folder.path, start.phase, run.monitor, progress, history, parameters, notes=notes,
                           head_fit=probe[1].to_dict() if probe else None)
        folder.write_json("config.json", {**config.to_dict(), "phase": start.phase, "parent": start.parent})
        folder.log(
            f"{'resume' if start.resume_state else 'start'} phase {start.phase}: {config.model.arch} on {data.source} "
            f"({data.num_classes} classes, {len(data.splits['train'])} train / {len(data.splits['val'])} val images), "
            f"freeze {built.freeze_policy}, {parameters['trainable']:,} of {parameters['total']:,} parameters trainable, "
            f"normalisation statistics {'kept' if keep_statistics else 'updated'}, {method}, "
            f"device {device}, amp {precision.name}, channels-last {'on' if channels_last else 'off'}, {threads} threads, "
            f"allocator {allocator}; features {inputs.paths['features']}; images {inputs.paths['images']}"
        )
        for note in notes:
            observer.warning(note)
        observer.info(f"phase {start.phase}: {method}")
        scalars = _tensorboard(folder.path) if run.tensorboard and is_main_process() else None

        def checkpoint(progress: Progress, history: list[dict]) -> dict[str, Any]:
            return stamp({
                "model": {**built.describe(), "hidden": list(config.model.hidden)},
                "classes": data.classes,
                "preprocess": preprocess.to_dict(),
                "freeze": {"policy": built.freeze_policy, "frozen": built.frozen, "bn_train": config.model.bn_train},
                "phase": start.phase,
                "parent": start.parent,
                "start": result.start,
                "head_fit": result.head_fit,
                **_training_state(model, trainer),
                "progress": asdict(progress),
                "history": history,
                "config": config.to_dict(),
                "data": {**data.summary(), "split": data.split_info},
            })

        if start.phase > 1 and not start.resume_state and val_loader is not None:
            _start_from_parent(result, progress, folder, lambda: checkpoint(progress, history), trainer)

        def save(progress: Progress, history: list[dict], is_best: bool) -> None:
            if not is_main_process():
                return
            atomic_save(checkpoint(progress, history), folder.last, *([folder.best] if is_best else []))
            folder.write_history(history)
            if time.monotonic() - plotted[0] >= CURVES_EVERY_S:
                plot_curves(history, folder.curves, title=f"{config.model.arch} on {data.source}")
                plotted[0] = time.monotonic()
            row = history[-1]
            if scalars is not None:
                for tag, key in TENSORBOARD_SCALARS.items():
                    scalars.add_scalar(tag, row[key], row["epoch"])
                scalars.flush()
            folder.log(
                f"phase {row['phase']} epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}, "
                f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}, lr {row['lr']:.3g}, {row['seconds']:.1f} s"
                + (" (best)" if is_best else "")
            )

        plotted = [time.monotonic()]  # the first drawing after CURVES_EVERY_S, or at the end
        if is_main_process():
            # matplotlib takes ~1.5 s to import: do it while the first epochs run.
            threading.Thread(target=pyplot, daemon=True).start()
        try:
            fit(trainer, epochs=run.epochs, progress=progress, history=history, save=save, observer=observer, epoch_offset=offset)
        finally:
            if history and is_main_process():  # the epochs since the last drawing
                plot_curves(history, folder.curves, title=f"{config.model.arch} on {data.source}")
            observer.close()
            if scalars is not None:
                scalars.close()
        if progress.stopped_early:
            folder.log(f"stopped early: no improvement in {run.monitor} for {run.patience} epochs")
        if start.phase > 1 and progress.best_epoch == 0 and result.start is not None:
            kept = (f"no phase-{start.phase} epoch beat phase {start.phase - 1}'s {run.monitor} ({progress.best_metric:.4f}): "
                    f"best.pt holds phase {start.phase - 1}'s model; last.pt holds this phase's last epoch")
            result.notes.append(kept)
            folder.log(kept)
            observer.warning(kept)
        folder.point_latest()
    return result


def _start_from_parent(result: RunResult, progress: Progress, folder: RunFolder, checkpoint, trainer: Trainer) -> None:
    """Phase 2 measures where phase 1 left the model, and best.pt starts as that model: a later
    epoch replaces it only by beating it on the monitored value, so phase 2 never ends worse."""
    before = evaluate(trainer.model, trainer.val_loader, trainer.criterion, device=trainer.device, precision=trainer.precision,
                      channels_last=trainer.channels_last)
    result.start = {"val_loss": before.loss, "val_acc": before.accuracy}
    progress.best_metric, progress.best_epoch = result.start[trainer.monitor], 0
    if not is_main_process():
        return
    atomic_save(checkpoint(), folder.best)
    folder.log(f"phase {trainer.phase} starts from phase {trainer.phase - 1}'s model: val loss {before.loss:.4f} acc {before.accuracy:.4f}; "
               "best.pt holds it until an epoch beats it")
