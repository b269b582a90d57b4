"""Every option's default, help and allowed values, in one place: the fields of these frozen
dataclasses, each declared with ``option.option`` (see ``tlcli.core.option``).

Library functions take the dataclasses whole, so a run's resolved configuration can be written
next to its outputs with ``asdict``.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, asdict, dataclass

from tlcli.core.errors import ConfigError
from tlcli.core.option import (
    Option, check_device, check_freeze_policy, check_positive, check_seed, check_unfreeze, check_value, declared, option, option_like, same_option,
)

DEFAULT_ARCH = "efficientnet_b0"
# The reports' seed; it drives the split, weight initialisation and data order.
DEFAULT_SEED = 42
DATA, MODEL, AUGMENT, OPTIM, RUN, SPEED, CACHES = "Data", "Model", "Augmentation (training only)", "Optimisation", "Run", "Speed", "Caches"

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("none", "cosine", "step", "plateau", "onecycle")
# How phase 1 fits the head: probe (full-batch L-BFGS on cached features, the L2 strength chosen
# on the validation split), epochs (the optimiser, epoch by epoch), auto (probe whenever the
# features are cached and the head is linear).
HEAD_FITS = ("auto", "probe", "epochs")
CLASS_WEIGHTS = ("none", "balanced")
MONITORS = ("val_loss", "val_acc")
AMP_CHOICES = ("auto", "bf16", "fp16", "off")
FEATURE_CACHE_CHOICES = ("auto", "on", "off")
IMAGE_CACHE_CHOICES = ("auto", "memory", "disk", "off")
AUTO_AUGMENTS = ("none", "trivial", "rand")
# Default learning rates: whole networks (the reports' 1e-3); only the head training epoch by
# epoch, where 1e-3 stops far short in 10 epochs (val accuracy 0.39 against 0.85 at 1e-2 on
# EfficientNet-Lite0 features of the digits); phase 2 (the reports' 1e-4).
DEFAULT_LR = 1e-3
HEAD_ONLY_LR = 1e-2
FINETUNE_LR = 1e-4
# How far phase 2 moves the backbone depends on the data: near ImageNet, Adam's normalised steps
# at FINETUNE_LR undo a converged head (first phase-2 epoch on the digits: train loss 0.008 ->
# 1.9) and a tenth of it keeps that epoch at 0.011; far from ImageNet the tenth barely moves the
# backbone (val 0.446 -> 0.464) where the full rate gains 11 points. So by default a trial of
# these multiples, each for phase 2's first epoch, on the validation split picks it (``engine.trial``).
BACKBONE_LR_CANDIDATES = (0.1, 1.0)
# Phase 2's defaults where phase 1 set none: augmentation that keeps any label (no flips: a
# mirrored digit or text changes class), label smoothing, and an epoch budget that early
# stopping on the validation accuracy cuts short (best epoch kept).
PHASE2_AUGMENT = {"rotate": 10.0, "zoom": 0.15, "contrast": 0.2}
PHASE2_LABEL_SMOOTHING = 0.1
PHASE2_PATIENCE = 3
# A first epoch at half the rate: the full rate's first Adam steps, each as large as the rate
# for every weight, knocked the digits' validation accuracy from 0.92 to 0.75 at x1 (0.89 warmed up).
PHASE2_WARMUP_EPOCHS = 1
PHASE2_FALLBACKS = {**{("augment", name): value for name, value in PHASE2_AUGMENT.items()},
                    ("optim", "label_smoothing"): PHASE2_LABEL_SMOOTHING, ("optim", "warmup_epochs"): PHASE2_WARMUP_EPOCHS,
                    ("run", "patience"): PHASE2_PATIENCE}



@dataclass(frozen=True)
class DataConfig:
    source: str = option("digits", "A folder, a name under data/, a built-in set (digits, mnist, fashion_mnist, cifar10, cifar100), TFRecord files, "
                         "hf:OWNER/NAME or hf:PATH (Hugging Face), or a CSV label file.", panel=DATA, name="data", short="-d")
    val_split: float = option(0.2, "Fraction held out for validation when the folder is not pre-split.", panel=DATA)
    test_split: float = option(0.1, "Fraction held out for testing when the folder is not pre-split.", panel=DATA)
    seed: int = option(DEFAULT_SEED, "Seed of the split (and, in training, of everything else).", panel=DATA, check=check_seed)
    max_bad: float = option(0.05, "Unreadable images tolerated (skipped with a warning): a fraction below 1, else a count.", panel=DATA, low=0.0)
    download: bool = option(False, "Fetch torchvision data sets when their files are missing.", panel=DATA)
    # K-fold cross-validation (train --folds): train+val pooled and re-split into ``folds``
    # stratified folds, ``fold`` (0-based) being validation; the test split is left alone. 0: off.
    folds: int = 0
    fold: int = 0
    class_names: str | None = option(None, "TFRecord data: a file of class names, one per line in label order [default: numbered].", panel=DATA)
    image_column: str | None = option(None, "hf: and CSV data: the column of the images [default: the Image feature, else image, filename, path, id, ...].", panel=DATA)
    label_column: str | None = option(None, "hf: and CSV data: the column of the labels [default: the ClassLabel feature, else label, class, target, ...].", panel=DATA)
    image_dir: str | None = option(None, "CSV data: the folder the image column is relative to [default: the CSV's folder].", panel=DATA)


@dataclass(frozen=True)
class ModelConfig:
    arch: str = option(DEFAULT_ARCH, "Architecture: a torchvision name, timm:<name>, simple_cnn or mlp.", panel=MODEL, short="-a")
    num_classes: int | None = option(None, "Size of the new head; when training it must equal the data's class count "
                                     "[default: the data's classes, else the weights' own head].", panel=MODEL, low=2)
    weights: str | None = option(None, "imagenet, none, or a state dict / tlcli checkpoint file [default: imagenet where the architecture has weights].",
                                 panel=MODEL)
    dropout: float | None = option(None, "Dropout before the new linear head [default: the architecture's own].", panel=MODEL, low=0.0, high=0.99)
    hidden: tuple[int, ...] = option((128, 64), "Hidden layer sizes of the mlp baseline, comma-separated.", panel=MODEL)
    freeze: str | None = option(None, "none | backbone | all | last:N | blocks:N | re:PATTERN [default: backbone with pretrained weights, else none].",
                                panel=MODEL, check=check_freeze_policy)
    # Off, normalisation layers keep the statistics the pretrained weights (or phase 1) came with,
    # so the head keeps seeing the features it was fitted on.
    bn_train: bool = option(False, "Let BatchNorm layers update their running statistics [default: off: they keep the pretrained (or phase-1) "
                            "statistics; from scratch they always update].", panel=MODEL, hidden_default=True)
    input_size: int | None = option(None, "Square input side [default: the weights' or architecture's preset].", panel=MODEL, low=4)


@dataclass(frozen=True)
class AugmentConfig:
    """Training-only augmentation; validation and test images are only resized and normalised."""

    hflip: bool = option(False, "Random horizontal flips.", panel=AUGMENT, phase2=True)
    rotate: float = option(0.0, "Random rotation up to this many degrees either way.", panel=AUGMENT, low=0.0, high=180.0, phase2=True)
    zoom: float = option(0.0, "Random zoom by up to this fraction (0.2: scale 0.8-1.2).", panel=AUGMENT, low=0.0, high=0.99, phase2=True)
    contrast: float = option(0.0, "Random contrast change by up to this fraction.", panel=AUGMENT, low=0.0, high=0.99, phase2=True)
    color_jitter: float = option(0.0, "Random brightness, contrast and saturation by this fraction.", panel=AUGMENT, low=0.0, high=0.99, phase2=True)
    auto_augment: str = option("none", "none | trivial (TrivialAugmentWide) | rand (RandAugment).", panel=AUGMENT, choices=AUTO_AUGMENTS, phase2=True)


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = option("adam", "adam | adamw | sgd | rmsprop.", panel=OPTIM, choices=OPTIMIZERS, phase2=True)
    lr: float | None = option(None, f"Learning rate, x>0 [default: {HEAD_ONLY_LR:g} when only the head trains epoch by epoch, else {DEFAULT_LR:g}].",
                              panel=OPTIM, check=check_positive)
    weight_decay: float = option(0.0, "Weight decay (L2); with the linear probe, 0 chooses it on the validation split.", panel=OPTIM, low=0.0, phase2=True)
    momentum: float = option(0.9, "Momentum of sgd and rmsprop.", panel=OPTIM, low=0.0, high=1.0)
    nesterov: bool = option(False, "Nesterov momentum (sgd).", panel=OPTIM)
    schedule: str = option("cosine", "none | cosine | step | plateau | onecycle.", panel=OPTIM, choices=SCHEDULES, phase2=True)
    warmup_epochs: int = option(0, "Linear warm-up epochs before the cosine decay.", panel=OPTIM, low=0, phase2=True)
    step_size: int = option(10, "step schedule: epochs between decays.", panel=OPTIM, low=1)
    gamma: float = option(0.1, "step and plateau schedules: decay factor.", panel=OPTIM, low=0.0, high=1.0)
    label_smoothing: float = option(0.0, "Label smoothing of the loss.", panel=OPTIM, low=0.0, high=0.99, phase2=True)
    grad_clip: float = option(0.0, "Clip the gradient norm to this; 0 turns it off.", panel=OPTIM, low=0.0)
    accumulate: int = option(1, "Batches per optimiser step (gradient accumulation).", panel=OPTIM, low=1)
    class_weights: str = option("none", "none | balanced (inverse class frequency in the loss).", panel=OPTIM, choices=CLASS_WEIGHTS)
    # Phase 2 (finetune's options): the backbone's rate as a multiple of the head's (None: chosen
    # by a trial), and its safety nets, an exponential moving average of the weights validated
    # beside them, and WiSE-FT at the end (phase 1's and phase 2's best weights mixed on val).
    backbone_lr_mult: float | None = 1.0
    head_fit: str = option("auto", "auto | probe | epochs: probe fits the head to convergence on cached features (full-batch L-BFGS, like a "
                           "logistic regression); epochs trains it with the optimiser (auto: probe whenever features are cached).",
                           panel=OPTIM, choices=HEAD_FITS)
    ema: bool = False
    wise_ft: bool = False


@dataclass(frozen=True)
class RunConfig:
    epochs: int = option(10, "Epochs to train (with --resume: the run's own unless given).", panel=RUN, short="-e", low=1)
    batch_size: int = option(32, "Images per batch, per process: in N processes (--nproc N, torchrun) the global batch is N times this, "
                             "and the learning rate is not scaled.", panel=RUN, short="-b", low=1, phase2=True)
    device: str = option("auto", "auto | cpu | cuda | cuda:N | mps.", panel=RUN, check=check_device, phase2=True)
    amp: str = option("auto", "auto | bf16 | fp16 | off. auto: bf16 (else fp16) on CUDA, off on the CPU.", panel=RUN, choices=AMP_CHOICES, phase2=True)
    channels_last: bool | None = option(None, "channels-last memory format [default: on for convolutional networks].", panel=SPEED,
                                        negatable=True, hidden_default=True)
    compile: bool = option(False, "torch.compile the model (slow first epoch).", panel=SPEED)
    sync_bn: bool = option(False, "In several processes: BatchNorm layers that train compute batch statistics over all processes' batches "
                           "(SyncBatchNorm, CUDA only); which layers train is the freeze policy's and --bn-train's choice.", panel=RUN)
    workers: int | None = option(None, "Data loader processes [default: 0 on 2 cores or fewer, else cores-1, at most 8].", panel=RUN, low=0, phase2=True)
    deterministic: bool = option(False, "Deterministic algorithms: identical runs for the same seed.", panel=RUN)
    seed: int = same_option(DEFAULT_SEED, "data")
    monitor: str = option("val_loss", "val_loss | val_acc: picks best.pt and drives early stopping.", panel=RUN, choices=MONITORS)
    patience: int = option(0, "Stop after this many epochs without improvement; 0 never stops early.", panel=RUN, low=0, phase2=True)
    out: str | None = option(None, "Run folder [default: DATA-ARCH-TIME in checkpoints/].", panel=RUN, short="-o")
    overwrite: bool = option(False, "Reuse an --out folder that already holds a run.", panel=RUN)
    tensorboard: bool = option(False, "Also write TensorBoard scalars to <run>/tensorboard (the tensorboard extra: pip install tlcli[tensorboard]).",
                               panel=RUN)
    cache_features: str = option("auto", "auto | on | off: train the head on backbone features computed once (auto: when the backbone is frozen "
                                 "and in inference mode).", panel=CACHES, choices=FEATURE_CACHE_CHOICES)
    feature_views: int = option(4, "With augmentation and cached features: augmented views cached per image, one drawn per epoch.",
                                panel=CACHES, low=1)
    cache_images: str = option("auto", "auto | memory | disk | off: decode and resize each image once (auto: memory when it fits, else disk).",
                               panel=CACHES, choices=IMAGE_CACHE_CHOICES, phase2=True)
    cache_dir: str | None = option(None, "Keep caches here for later runs (features are reused only when given) [default: none; images cached on "
                                   "disk go to $TLCLI_CACHE_DIR or ~/.cache/tlcli].", panel=CACHES, phase2=True)


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    augment: AugmentConfig = AugmentConfig()
    optim: OptimConfig = OptimConfig()
    run: RunConfig = RunConfig()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        model = dict(values["model"])
        model["hidden"] = tuple(model["hidden"])
        return cls(
            data=DataConfig(**values["data"]),
            model=ModelConfig(**model),
            augment=AugmentConfig(**values["augment"]),
            optim=OptimConfig(**values["optim"]),
            # Runs from before the caches existed resume as they ran, recomputing features.
            run=RunConfig(**{"cache_features": "off", **values["run"]}),
        )


SECTIONS = {"data": DataConfig, "model": ModelConfig, "augment": AugmentConfig, "optim": OptimConfig, "run": RunConfig}
# Every train option: name -> (section, field, declaration), in the order --help lists them.
TRAIN_OPTIONS: dict[str, tuple[str, str, Option]] = {name: (section, field.name, declaration)
                                                     for section, kind in SECTIONS.items() for name, field, declaration in declared(kind)}
# Each train option's field: its default and its type.
TRAIN_FIELDS: dict[str, Field] = {name: SECTIONS[section].__dataclass_fields__[field] for name, (section, field, _) in TRAIN_OPTIONS.items()}


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    for label, value in (("--val-split", val_fraction), ("--test-split", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{label} must be at least 0 and below 1, got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"--val-split {val_fraction} and --test-split {test_fraction} leave nothing for training; keep their sum below 1"
        )


def check_folds(folds: int) -> int:
    """``folds`` when it is 0 (no cross-validation) or at least 2, else a ConfigError."""
    if folds != 0 and folds < 2:
        raise ConfigError(f"cross-validation needs at least 2 folds (0 turns it off), got {folds}")
    return folds


def check_config(config: TrainConfig) -> None:
    """A ConfigError for the first value a run cannot take, whatever its data: an option's choice,
    range or form, a number that is not finite, or a pair of fractions that leaves nothing to train on."""
    for name, (section, field, declaration) in TRAIN_OPTIONS.items():
        check_value(name, declaration, getattr(getattr(config, section), field))
    for section in (config.data, config.model, config.augment, config.optim, config.run):
        for name, value in vars(section).items():
            check_value(name, Option(""), value)  # the fields that are no option: finite
    check_seed(config.run.seed)
    if (config.optim.backbone_lr_mult or 0.0) < 0:  # finetune's option, as a phase-2 run's configuration holds it
        raise ConfigError(f"backbone lr mult must be at least 0, got {config.optim.backbone_lr_mult}")
    check_fractions(config.data.val_split, config.data.test_split)


@dataclass(frozen=True)
class FinetuneConfig:
    """Phase 2: continue a run with more of the network unfrozen, at a lower learning rate."""

    source: str = option(MISSING, "The phase-1 run: a run folder, a run name under checkpoints/, or a checkpoint file.", flag="--from")
    unfreeze: str = option("all", "all, or a --freeze policy for what stays frozen: last:N trains the last N layers, blocks:N keeps the first "
                           "N stages frozen.", check=check_unfreeze)
    epochs: int = option_like(RunConfig, "epochs", 12)  # a budget: early stopping (PHASE2_PATIENCE) usually ends phase 2 sooner
    lr: float = option(FINETUNE_LR, "Learning rate of the head, x>0 (the usual phase-2 rate, a tenth of phase 1's 1e-3).", panel=OPTIM,
                       check=check_positive)
    backbone_lr_mult: float | None = option(None, "Backbone learning rate as a multiple of the head's [default: chosen from 0.1 and 1 by a "
                                            "short trial on the validation split].", panel=OPTIM, low=0.0)
    ema: bool = option(True, "Keep a moving average of the weights, validated beside them each epoch; best.pt takes whichever is better.",
                       panel=OPTIM, negatable=True)
    wise_ft: bool = option(True, "At the end, mix phase 1's and phase 2's best weights in the proportion the validation split prefers "
                           "(phase 1's own included).", panel=OPTIM, negatable=True)
    bn_train: bool = option_like(ModelConfig, "bn_train", False)
    # Accuracy, not loss: after the probe, phase 2 drives the train loss from 0.013 to 0.0015, so the
    # val loss stays flat (0.1886 -> 0.1877-0.2022) while val accuracy climbs (0.944 -> 0.958, bench
    # quality); a loss "improvement" of 0.0009 picked an epoch 1.7 points worse on test than the last.
    monitor: str = option("val_acc", "val_acc | val_loss: picks best.pt (after the linear probe the val loss stays flat while accuracy climbs).",
                          panel=RUN, choices=MONITORS)
    out: str | None = option(None, "Run folder [default: DATA-ARCH-TIME-ft beside phase 1's].", panel=RUN, short="-o")
    overwrite: bool = option_like(RunConfig, "overwrite", False)
    # Phase 1's settings to change (the options declared phase2=True: optimizer, hflip, device, ...),
    # as (section, field, value); the others default to phase 1's where it set them, else to
    # PHASE2_FALLBACKS.
    overrides: tuple[tuple[str, str, object], ...] = ()


# What finetune may change from phase 1: name -> (section, field, declaration).
PHASE1_OVERRIDES = {name: place for name, place in TRAIN_OPTIONS.items() if place[2].phase2}
