"""Every option's default, in one place.

The CLI builds these frozen dataclasses from its flags; library functions take them whole,
so a run's resolved configuration can be written next to its outputs with ``asdict``.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

from tlcli.errors import ConfigError

DEFAULT_ARCH = "efficientnet_b0"
# The reports' seed; it drives the split, weight initialisation and data order.
DEFAULT_SEED = 42
# numpy takes seeds up to 2**32 - 1, and torch's generators take seed * 1000 + epoch below 2**64.
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class DataConfig:
    # A folder path, a name under data/ (``pokemon`` -> data/pokemon), a built-in set, TFRecord
    # files, ``hf:OWNER/NAME`` or ``hf:PATH`` (a Hugging Face dataset), or a CSV label file.
    source: str = "digits"
    # Fractions held out when the folder is not already split into train/val/test.
    val_split: float = 0.2
    test_split: float = 0.1
    seed: int = DEFAULT_SEED
    # Unreadable images are skipped; more than this many (a fraction when below 1) fails the run.
    max_bad: float = 0.05
    # torchvision data sets only: fetch the files when they are missing and the network allows.
    download: bool = False
    # K-fold cross-validation: train+val pooled and re-split into ``folds`` stratified folds,
    # ``fold`` (0-based) being validation; the test split is left alone. 0 turns it off.
    folds: int = 0
    fold: int = 0
    # TFRecord sources: a file with one class name per line, in label order; None numbers them.
    class_names: str | None = None
    # Hugging Face datasets and CSV label files: the columns of the image and the label; None
    # finds them (the Image and ClassLabel features, else common names such as image and label).
    image_column: str | None = None
    label_column: str | None = None
    # CSV label files: the folder the image column's paths and ids are relative to; None: the CSV's.
    image_dir: str | None = None


@dataclass(frozen=True)
class AugmentConfig:
    """Training-only augmentation; validation and test images are only resized and normalised."""

    hflip: bool = False
    rotate: float = 0.0  # degrees, either way
    zoom: float = 0.0  # 0.2 scales by a random factor in [0.8, 1.2], like Keras RandomZoom(0.2)
    contrast: float = 0.0  # 0.1 scales contrast by a random factor in [0.9, 1.1]
    color_jitter: float = 0.0  # brightness, contrast and saturation by this factor, hue by a quarter
    auto_augment: str = "none"  # none | trivial | rand



@dataclass(frozen=True)
class ModelConfig:
    arch: str = DEFAULT_ARCH
    # None: the number of classes of the data, or of the weights' own head (1000 for ImageNet).
    num_classes: int | None = None
    # imagenet | none | a path to a state dict or tlcli checkpoint; None: imagenet where the
    # architecture has pretrained weights, none for the from-scratch baselines.
    weights: str | None = None
    # Dropout before the new linear head; None keeps the architecture's own (0.2 for EfficientNet-B0).
    dropout: float | None = None
    # Hidden layer sizes of the ``mlp`` baseline (the MNIST report's 784-128-64-10).
    hidden: tuple[int, ...] = (128, 64)
    # none | backbone | all | last:N | blocks:N | re:PATTERN; None: backbone with weights, else none.
    freeze: str | None = None
    # Let BatchNorm layers update their running statistics. Off, they keep the statistics the
    # pretrained weights (or phase 1) came with, frozen layers and fine-tuned ones alike, so the
    # head keeps seeing the features it was fitted on; a network trained from scratch updates them.
    bn_train: bool = False
    # Square input side; None takes the preset of the weights or the architecture.
    input_size: int | None = None


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
class OptimConfig:
    optimizer: str = "adam"  # the reports' choice
    lr: float | None = None  # None: HEAD_ONLY_LR when only the head trains, else DEFAULT_LR
    # With head_fit probe: 0 lets the probe choose its L2 strength on the validation split.
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd and rmsprop
    nesterov: bool = False  # sgd
    schedule: str = "cosine"
    warmup_epochs: int = 0  # linear warm-up before the cosine decay
    step_size: int = 10  # step: epochs between decays
    gamma: float = 0.1  # step and plateau: decay factor
    label_smoothing: float = 0.0
    grad_clip: float = 0.0  # max gradient norm; 0 turns clipping off
    accumulate: int = 1  # batches per optimizer step
    class_weights: str = "none"  # none | balanced: inverse class frequency in the loss
    # Phase 2: the backbone's learning rate as a multiple of the head's; None: chosen by a trial.
    backbone_lr_mult: float | None = 1.0
    head_fit: str = "auto"
    # Phase 2's safety nets: an exponential moving average of the weights, validated beside
    # them each epoch, and WiSE-FT at the end (phase 1's and phase 2's best weights mixed, the
    # mix chosen on the validation split), so phase 2 never ends below phase 1 there.
    ema: bool = False
    wise_ft: bool = False


@dataclass(frozen=True)
class RunConfig:
    epochs: int = 10
    batch_size: int = 32
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    amp: str = "auto"  # auto | bf16 | fp16 | off; auto: bf16/fp16 on CUDA, off on the CPU
    channels_last: bool | None = None  # None: on for convolutional networks
    compile: bool = False
    # Under torchrun: BatchNorm layers that train use the batch of every process (CUDA only).
    sync_bn: bool = False
    workers: int | None = None  # None: 0 on machines of 2 cores or fewer, else cores - 1 (at most 8)
    deterministic: bool = False
    seed: int = DEFAULT_SEED
    monitor: str = "val_loss"  # val_loss | val_acc: picks best.pt and drives early stopping
    patience: int = 0  # epochs without improvement before stopping; 0 never stops early
    out: str | None = None  # run folder; None: checkpoints/<data>-<arch>-<timestamp>
    overwrite: bool = False  # reuse an --out folder that already holds a run
    tensorboard: bool = False
    # Phase 1 trains the head on backbone features computed once (auto: whenever that is exact).
    cache_features: str = "auto"  # auto | on | off
    feature_views: int = 4  # with augmentation: augmented views cached per image, one drawn per epoch
    # Images decoded and resized once, kept as uint8 (auto: memory when it fits, else disk).
    cache_images: str = "auto"  # auto | memory | disk | off
    cache_dir: str | None = None  # caches that later runs reuse; None: TLCLI_CACHE_DIR or ~/.cache/tlcli


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


POLICY_FORMS = ("none", "backbone", "all", "last:N", "blocks:N", "re:PATTERN")


def check_freeze_policy(policy: str) -> str:
    """``policy`` when it is a well-formed freeze policy (whatever the network), else a ConfigError."""
    if policy in ("none", "all", "backbone"):
        return policy
    if policy.startswith(("last:", "blocks:")):
        if not policy.partition(":")[2].isdigit():
            raise ConfigError(f"freeze policy '{policy}' needs a whole number after '{policy.partition(':')[0]}:', e.g. {policy.partition(':')[0]}:2")
        return policy
    if policy.startswith("re:"):
        try:
            re.compile(policy[3:])
        except re.error as exc:
            raise ConfigError(f"freeze policy '{policy}': bad regular expression ({exc})") from None
        return policy
    raise ConfigError(f"unknown freeze policy '{policy}'; use one of {', '.join(POLICY_FORMS)}")


# Every field with a fixed set of values: (section, field) -> the values. The command line offers
# exactly these, and check_choices refuses anything else in a configuration built elsewhere.
CHOICES = {
    ("augment", "auto_augment"): AUTO_AUGMENTS,
    ("optim", "optimizer"): OPTIMIZERS,
    ("optim", "schedule"): SCHEDULES,
    ("optim", "class_weights"): CLASS_WEIGHTS,
    ("optim", "head_fit"): HEAD_FITS,
    ("run", "amp"): AMP_CHOICES,
    ("run", "monitor"): MONITORS,
    ("run", "cache_features"): FEATURE_CACHE_CHOICES,
    ("run", "cache_images"): IMAGE_CACHE_CHOICES,
}


def check_choices(config: TrainConfig) -> None:
    """A ConfigError naming the first field whose value is not one of its choices."""
    for (section, name), valid in CHOICES.items():
        value = getattr(getattr(config, section), name)
        if value not in valid:
            raise ConfigError(f"unknown {name.replace('_', ' ')} '{value}'; choose one of {', '.join(valid)}")


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


# The ranges of numeric fields, as the command line's options bound them: (section, field) ->
# (lowest, highest), None for no bound; a None value (the field's automatic choice) passes.
RANGES = {
    ("model", "num_classes"): (2, None), ("model", "dropout"): (0.0, 0.99), ("model", "input_size"): (4, None),
    ("data", "max_bad"): (0.0, None), ("augment", "rotate"): (0.0, 180.0), ("augment", "zoom"): (0.0, 0.99),
    ("augment", "contrast"): (0.0, 0.99), ("augment", "color_jitter"): (0.0, 0.99),
    ("optim", "weight_decay"): (0.0, None), ("optim", "momentum"): (0.0, 1.0), ("optim", "warmup_epochs"): (0, None),
    ("optim", "step_size"): (1, None), ("optim", "gamma"): (0.0, 1.0), ("optim", "label_smoothing"): (0.0, 0.99),
    ("optim", "grad_clip"): (0.0, None), ("optim", "accumulate"): (1, None), ("optim", "backbone_lr_mult"): (0.0, None),
    ("run", "batch_size"): (1, None), ("run", "workers"): (0, None), ("run", "patience"): (0, None),
}
DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"


def check_ranges(config: TrainConfig) -> None:
    """A ConfigError for the first numeric field outside its range, or a device of no known form."""
    for (section, name), (low, high) in RANGES.items():
        value = getattr(getattr(config, section), name)
        if value is not None and ((low is not None and value < low) or (high is not None and value > high)):
            bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise ConfigError(f"{name.replace('_', ' ')} must be {bounds}, got {value}")
    if not re.fullmatch(DEVICE_PATTERN, config.run.device):
        raise ConfigError(f"unknown device '{config.run.device}'; use auto, cpu, cuda, cuda:N or mps")


def check_config(config: TrainConfig) -> None:
    """A ConfigError for the first value a run cannot take, whatever its data: a choice, a range,
    a number that is not finite, or a pair of fractions that leaves nothing to train on."""
    check_choices(config)
    check_ranges(config)
    for section in (config.data, config.model, config.augment, config.optim, config.run):
        for name, value in vars(section).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{name.replace('_', ' ')} must be a finite number, got {value}")
    for seed in (config.data.seed, config.run.seed):
        if not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"the seed must be a whole number from 0 to {MAX_SEED}, got {seed}")
    if config.run.epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {config.run.epochs}")
    if config.run.feature_views < 1:
        raise ConfigError(f"feature views must be at least 1, got {config.run.feature_views}")
    if config.optim.lr is not None and not config.optim.lr > 0:
        raise ConfigError(f"the learning rate must be positive, got {config.optim.lr}")
    check_fractions(config.data.val_split, config.data.test_split)


@dataclass(frozen=True)
class FinetuneConfig:
    """Phase 2: continue a run with more of the network unfrozen, at a lower learning rate."""

    source: str  # a run folder, a run name under checkpoints/, or a checkpoint file
    # all: train everything; else a --freeze policy saying what stays frozen (last:N, blocks:N, ...).
    unfreeze: str = "all"
    epochs: int = 12  # a budget: early stopping (PHASE2_PATIENCE) usually ends phase 2 sooner
    lr: float = FINETUNE_LR
    backbone_lr_mult: float | None = None  # None: the trial of BACKBONE_LR_CANDIDATES picks it
    ema: bool = True
    wise_ft: bool = True
    # Any OptimConfig / RunConfig / AugmentConfig field to change from phase 1 (optimizer,
    # schedule, device, out, hflip, ...); augmentation, label smoothing and patience default to
    # phase 1's where it set them, else to PHASE2_AUGMENT, PHASE2_LABEL_SMOOTHING, PHASE2_PATIENCE.
    optim_overrides: tuple[tuple[str, object], ...] = ()
    run_overrides: tuple[tuple[str, object], ...] = ()
    augment_overrides: tuple[tuple[str, object], ...] = ()
    bn_train: bool = False  # see ModelConfig.bn_train
    # What picks phase 2's best.pt. Accuracy, not loss: after the probe, phase 2 drives the train
    # loss from 0.013 to 0.0015, so the val loss stays flat (0.1886 -> 0.1877-0.2022) while val
    # accuracy climbs (0.944 -> 0.958, bench quality); a loss "improvement" of 0.0009 picked an
    # epoch 1.7 points worse on test than the last.
    monitor: str = "val_acc"
