"""``tlcli train`` (phase 1, or a whole from-scratch run) and ``tlcli finetune`` (phase 2)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli.cli import options, output
from tlcli.cli.progress import make_observer
from tlcli.config import DEFAULT_ARCH, DEFAULT_LR, FINETUNE_BACKBONE_LR_MULT, FINETUNE_LR, HEAD_ONLY_LR, AugmentConfig, DataConfig, FinetuneConfig, OptimConfig, RunConfig, TrainConfig

_D, _O, _R = DataConfig(), OptimConfig(), RunConfig()
EPILOG = "Exit codes: 0 success, 1 runtime failure (one 'Error:' line), 2 usage error, 130 interrupted (last.pt is intact)."


def _render(result) -> None:
    document = result.to_dict()
    final = document["final"] or {}
    lines = [f"run: {document['run_dir']}"]
    if document["start"]:
        lines.append(f"phase {document['phase']} start: val loss {document['start']['val_loss']:.4f} acc {document['start']['val_acc']:.4f}")
    if final:
        val = "" if math.isnan(final["val_acc"]) else f", val loss {final['val_loss']:.4f} acc {final['val_acc']:.4f}"
        lines.append(f"last epoch {final['epoch']}: train loss {final['train_loss']:.4f} acc {final['train_acc']:.4f}{val}")
    best = document["best_metric"]
    if best is None:
        lines.append("no best epoch")
    elif document["start"] and document["best_epoch"] == 0:
        lines.append(f"best {document['monitor']}: {best:.4f} from phase {document['phase'] - 1}: no epoch of this phase beat it, best.pt holds phase {document['phase'] - 1}'s model")
    else:
        lines.append(f"best {document['monitor']}: {best:.4f} at epoch {document['best_epoch']} of this phase")
    if document["stopped_early"]:
        lines.append("stopped early")
    lines += [f"{name}: {path}" for name, path in document["files"].items()]
    output.out.print("\n".join(lines), markup=False)


def train(
    data: options.Data = _D.source,
    arch: options.Arch = DEFAULT_ARCH,
    num_classes: options.NumClasses = None,
    weights: options.Weights = None,
    dropout: options.Dropout = None,
    hidden: options.Hidden = "128,64",
    freeze: options.Freeze = None,
    bn_train: options.BnTrain = False,
    input_size: options.InputSize = None,
    val_split: options.ValSplit = _D.val_split,
    test_split: options.TestSplit = _D.test_split,
    seed: options.Seed = _D.seed,
    max_bad: options.MaxBad = _D.max_bad,
    download: options.Download = False,
    class_names: options.ClassNames = None,
    hflip: options.HFlip = False,
    rotate: options.Rotate = 0.0,
    zoom: options.Zoom = 0.0,
    contrast: options.Contrast = 0.0,
    color_jitter: options.ColorJitter = 0.0,
    auto_augment: options.AutoAugment = "none",
    optimizer: options.Optimizer = _O.optimizer,
    lr: Annotated[Optional[float], typer.Option("--lr", min=0.0, help=f"Learning rate [default: {HEAD_ONLY_LR:g} when only the head trains epoch by epoch, else {DEFAULT_LR:g}].", rich_help_panel="Optimisation")] = None,
    weight_decay: options.WeightDecay = _O.weight_decay,
    momentum: options.Momentum = _O.momentum,
    nesterov: options.Nesterov = False,
    schedule: options.Schedule = _O.schedule,
    warmup_epochs: options.WarmupEpochs = _O.warmup_epochs,
    step_size: options.StepSize = _O.step_size,
    gamma: options.Gamma = _O.gamma,
    label_smoothing: options.LabelSmoothing = _O.label_smoothing,
    grad_clip: options.GradClip = _O.grad_clip,
    accumulate: options.Accumulate = _O.accumulate,
    class_weights: options.ClassWeights = _O.class_weights,
    head_fit: options.HeadFit = _O.head_fit,
    epochs: Annotated[Optional[int], typer.Option("--epochs", "-e", min=1, help=f"Epochs to train [default: {_R.epochs}; with --resume: the run's own].", rich_help_panel="Run")] = None,
    batch_size: options.BatchSize = _R.batch_size,
    device: options.Device = _R.device,
    amp: options.Amp = _R.amp,
    channels_last: options.ChannelsLast = None,
    compile: options.Compile = False,
    workers: options.Workers = None,
    deterministic: options.Deterministic = False,
    monitor: options.Monitor = _R.monitor,
    patience: options.Patience = _R.patience,
    out: options.Out = None,
    overwrite: options.Overwrite = False,
    tensorboard: options.Tensorboard = False,
    cache_features: options.CacheFeatures = _R.cache_features,
    feature_views: options.FeatureViews = _R.feature_views,
    cache_images: options.CacheImages = _R.cache_images,
    cache_dir: options.CacheDir = None,
    folds: Annotated[int, typer.Option("--folds", min=0, help="Stratified K-fold cross-validation on train+val: one model per fold, mean ± std (0: off).", rich_help_panel="Run")] = 0,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue an interrupted run from its last.pt (only --epochs may change).", rich_help_panel="Run")] = None,
    as_json: options.JsonOption = False,
) -> None:
    """Train a model: phase 1 of transfer learning (backbone frozen), or a whole from-scratch run.

    With pretrained weights the backbone is frozen by default (--freeze backbone); with
    --weights none everything trains. Writes best.pt, last.pt, config.json, history.csv,
    curves.png and log.txt to the run folder.
    """
    from tlcli import training

    observer = make_observer()
    if resume is not None:
        result = training.resume(resume, epochs=epochs, observer=observer)
    elif folds:
        return _cross_validate(config_from_params(locals()), folds, as_json)
    else:
        result = training.train(config_from_params(locals()), observer=observer)
    output.print_json(result.to_dict()) if as_json else _render(result)


def _cross_validate(config: TrainConfig, folds: int, as_json: bool) -> None:
    from dataclasses import replace

    from tlcli.cli.compare import render_table
    from tlcli.runs import checkpoints_root, default_run_name
    from tlcli.study import run_study

    name = default_run_name(config.data.source, config.model.arch, f"-{folds}fold")
    out = Path(config.run.out) if config.run.out else checkpoints_root() / name
    config = replace(config, run=replace(config.run, out=None))

    def observer_for(label: str):
        output.info(f"== {label}")
        return make_observer()

    result = run_study([(config.model.arch, config)], out, folds=folds, observer_for=observer_for, title=f"{folds}-fold cross-validation")
    if as_json:
        output.print_json(result.to_dict())
        return
    per_fold = [{**run.row(), "name": f"fold {run.fold + 1}"} for run in result.runs]
    render_table(per_fold + [{**result.table[0], "name": "mean ± std"}], f"{folds}-fold cross-validation of {config.model.arch}")
    output.out.print("\n".join(f"{n}: {p}" for n, p in {**result.files, **result.figures}.items()), markup=False)


def config_from_params(p: dict) -> TrainConfig:
    """The TrainConfig that ``tlcli train``'s parsed options describe (``compare`` reuses it)."""
    return TrainConfig(
        data=options.data_config(p["data"], p["val_split"], p["test_split"], p["seed"], p["max_bad"], p["download"], p["class_names"]),
        model=options.model_config(
            p["arch"], p["num_classes"], p["weights"], p["dropout"], p["hidden"], p["freeze"], p["bn_train"], p["input_size"]
        ),
        augment=AugmentConfig(p["hflip"], p["rotate"], p["zoom"], p["contrast"], p["color_jitter"], p["auto_augment"]),
        optim=OptimConfig(
            p["optimizer"], p["lr"], p["weight_decay"], p["momentum"], p["nesterov"], p["schedule"], p["warmup_epochs"],
            p["step_size"], p["gamma"], p["label_smoothing"], p["grad_clip"], p["accumulate"], p["class_weights"],
            head_fit=p["head_fit"],
        ),
        run=RunConfig(
            p["epochs"] or _R.epochs, p["batch_size"], p["device"], p["amp"], p["channels_last"], p["compile"], p["workers"],
            p["deterministic"], p["seed"], p["monitor"], p["patience"], p["out"], p["overwrite"], p["tensorboard"],
            cache_features=p["cache_features"], feature_views=p["feature_views"], cache_images=p["cache_images"], cache_dir=p["cache_dir"],
        ),
    )


def finetune(
    source: Annotated[str, typer.Option("--from", help="The phase-1 run: a run folder, a run name under checkpoints/, or a checkpoint file.")],
    unfreeze: Annotated[str, typer.Option("--unfreeze", help="all, or a --freeze policy for what stays frozen: last:N trains the last N layers, blocks:N keeps the first N stages frozen.")] = "all",
    epochs: options.Epochs = 5,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Learning rate of the head (the reports' phase-2 rate).", rich_help_panel="Optimisation")] = FINETUNE_LR,
    backbone_lr_mult: Annotated[float, typer.Option("--backbone-lr-mult", min=0.0, help="Backbone learning rate as a multiple of the head's (a tenth keeps the head's fit while the backbone adapts).", rich_help_panel="Optimisation")] = FINETUNE_BACKBONE_LR_MULT,
    optimizer: Annotated[Optional[str], typer.Option("--optimizer", help="Change phase 1's optimiser.", rich_help_panel="Optimisation")] = None,
    schedule: Annotated[Optional[str], typer.Option("--schedule", help="Change phase 1's schedule.", rich_help_panel="Optimisation")] = None,
    weight_decay: Annotated[Optional[float], typer.Option("--weight-decay", min=0.0, help="Change phase 1's weight decay.", rich_help_panel="Optimisation")] = None,
    warmup_epochs: Annotated[Optional[int], typer.Option("--warmup-epochs", min=0, help="Change phase 1's linear warm-up epochs.", rich_help_panel="Optimisation")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b", min=1, help="Change phase 1's batch size.", rich_help_panel="Run")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="Change phase 1's device.", rich_help_panel="Run")] = None,
    amp: Annotated[Optional[str], typer.Option("--amp", help="Change phase 1's mixed precision.", rich_help_panel="Run")] = None,
    patience: Annotated[Optional[int], typer.Option("--patience", min=0, help="Change phase 1's early-stopping patience.", rich_help_panel="Run")] = None,
    bn_train: options.BnTrain = False,
    hflip: Annotated[Optional[bool], typer.Option("--hflip/--no-hflip", help="Change phase 1's horizontal flips.", rich_help_panel="Augmentation (training only)", show_default=False)] = None,
    rotate: Annotated[Optional[float], typer.Option("--rotate", min=0.0, max=180.0, help="Change phase 1's random rotation (degrees).", rich_help_panel="Augmentation (training only)")] = None,
    zoom: Annotated[Optional[float], typer.Option("--zoom", min=0.0, max=0.99, help="Change phase 1's random zoom.", rich_help_panel="Augmentation (training only)")] = None,
    contrast: Annotated[Optional[float], typer.Option("--contrast", min=0.0, max=0.99, help="Change phase 1's random contrast.", rich_help_panel="Augmentation (training only)")] = None,
    color_jitter: Annotated[Optional[float], typer.Option("--color-jitter", min=0.0, max=0.99, help="Change phase 1's colour jitter.", rich_help_panel="Augmentation (training only)")] = None,
    auto_augment: Annotated[Optional[str], typer.Option("--auto-augment", help="Change phase 1's automatic augmentation: none | trivial | rand.", rich_help_panel="Augmentation (training only)")] = None,
    workers: options.Workers = None,
    cache_images: Annotated[Optional[str], typer.Option("--cache-images", help="Change phase 1's image cache: auto | memory | disk | off.", rich_help_panel="Caches")] = None,
    cache_dir: options.CacheDir = None,
    out: options.Out = None,
    overwrite: options.Overwrite = False,
    as_json: options.JsonOption = False,
) -> None:
    """Phase 2: unfreeze (all by default) and fine-tune a trained run at a lower learning rate.

    Loads the run's best.pt with its trained head, continues its history, and writes a new run
    folder that records its parent. Data, model and augmentation are phase 1's.
    """
    from tlcli import training

    optim = {"optimizer": optimizer, "schedule": schedule, "weight_decay": weight_decay, "warmup_epochs": warmup_epochs}
    augment = {"hflip": hflip, "rotate": rotate, "zoom": zoom, "contrast": contrast, "color_jitter": color_jitter, "auto_augment": auto_augment}
    run = {"batch_size": batch_size, "device": device, "amp": amp, "patience": patience, "workers": workers, "out": out,
           "cache_images": cache_images, "cache_dir": cache_dir,
           "overwrite": overwrite or None}
    config = FinetuneConfig(
        source=source,
        unfreeze=unfreeze,
        epochs=epochs,
        lr=lr,
        backbone_lr_mult=backbone_lr_mult,
        optim_overrides=tuple((k, v) for k, v in optim.items() if v is not None),
        run_overrides=tuple((k, v) for k, v in run.items() if v is not None),
        augment_overrides=tuple((k, v) for k, v in augment.items() if v is not None),
        bn_train=bn_train,
    )
    result = training.finetune(config, observer=make_observer())
    output.print_json(result.to_dict()) if as_json else _render(result)
