"""Options shared by several commands, declared once."""

from __future__ import annotations

import re
from typing import Annotated, Optional

import typer

from tlcli.config import CHOICES, DEVICE_PATTERN, MAX_SEED, DataConfig, check_folds
from tlcli.errors import ConfigError


def defaults_of(function) -> dict:
    """The defaults of an API verb's keyword arguments: the one place a command's defaults live."""
    import inspect

    return {name: p.default for name, p in inspect.signature(function).parameters.items() if p.default is not inspect.Parameter.empty}


def _choice(section: str, name: str):
    """A callback refusing any value outside the field's choices: exit 2, before data is read."""
    valid = CHOICES[(section, name)]

    def check(value):
        if value is not None and value not in valid:
            raise typer.BadParameter(f"'{value}' is not one of {', '.join(valid)}")
        return value

    return check


def _freeze(value: str | None) -> str | None:
    from tlcli.config import check_freeze_policy
    from tlcli.errors import ConfigError

    try:
        return None if value is None else check_freeze_policy(value)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None


check_monitor = _choice("run", "monitor")


def check_unfreeze(value: str) -> str:
    """finetune's --unfreeze: all, or a freeze policy for what stays frozen."""
    return value if value == "all" else _freeze(value)


def _arch(value: str | None) -> str | None:
    from tlcli.errors import ModelError
    from tlcli.models.registry import check_arch

    try:
        if value is not None:
            check_arch(value)
    except ModelError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def positive(value: float | None) -> float | None:
    """A callback refusing zero and below (Typer's ``min`` lets the bound itself through)."""
    if value is not None and value <= 0:
        raise typer.BadParameter(f"{value:g} is not > 0")
    return value


def _seed(value: int) -> int:
    if not 0 <= value <= MAX_SEED:
        raise typer.BadParameter(f"{value} is not a seed: give a whole number from 0 to {MAX_SEED}")
    return value


def folds(value: int) -> int:
    """--folds of train and compare: 0 (off) or at least 2."""
    try:
        return check_folds(value)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None


def _device(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(DEVICE_PATTERN, value):
        raise typer.BadParameter(f"'{value}' is not one of auto, cpu, cuda, cuda:N, mps")
    return value

_DATA = "Data"
_MODEL = "Model"

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]

Arch = Annotated[str, typer.Option("--arch", "-a", help="Architecture: a torchvision name, timm:<name>, simple_cnn or mlp.", rich_help_panel=_MODEL, callback=_arch)]
NumClasses = Annotated[Optional[int], typer.Option("--num-classes", min=2, help="Size of the new head; when training it must equal the data's class count [default: the data's classes, else the weights' own head].", rich_help_panel=_MODEL)]
Weights = Annotated[Optional[str], typer.Option("--weights", help="imagenet, none, or a state dict / tlcli checkpoint file [default: imagenet where the architecture has weights].", rich_help_panel=_MODEL)]
Dropout = Annotated[Optional[float], typer.Option("--dropout", min=0.0, max=0.99, help="Dropout before the new linear head [default: the architecture's own].", rich_help_panel=_MODEL)]
Hidden = Annotated[str, typer.Option("--hidden", help="Hidden layer sizes of the mlp baseline, comma-separated.", rich_help_panel=_MODEL)]
Freeze = Annotated[Optional[str], typer.Option("--freeze", help="none | backbone | all | last:N | blocks:N | re:PATTERN [default: backbone with pretrained weights, else none].", rich_help_panel=_MODEL, callback=_freeze)]
BnTrain = Annotated[bool, typer.Option("--bn-train", help="Let BatchNorm layers update their running statistics [default: off: they keep the pretrained (or phase-1) statistics; from scratch they always update].", rich_help_panel=_MODEL)]
InputSize = Annotated[Optional[int], typer.Option("--input-size", min=4, help="Square input side [default: the weights' or architecture's preset].", rich_help_panel=_MODEL)]

Data = Annotated[str, typer.Option("--data", "-d", help="A folder, a name under data/, a built-in set (digits, mnist, fashion_mnist, cifar10, cifar100), TFRecord files, hf:OWNER/NAME or hf:PATH (Hugging Face), or a CSV label file.", rich_help_panel=_DATA)]
ValSplit = Annotated[float, typer.Option("--val-split", help="Fraction held out for validation when the folder is not pre-split.", rich_help_panel=_DATA)]
TestSplit = Annotated[float, typer.Option("--test-split", help="Fraction held out for testing when the folder is not pre-split.", rich_help_panel=_DATA)]
Seed = Annotated[int, typer.Option("--seed", callback=_seed, help="Seed of the split (and, in training, of everything else).", rich_help_panel=_DATA)]
MaxBad = Annotated[float, typer.Option("--max-bad", min=0.0, help="Unreadable images tolerated (skipped with a warning): a fraction below 1, else a count.", rich_help_panel=_DATA)]
ClassNames = Annotated[Optional[str], typer.Option("--class-names", help="TFRecord data: a file of class names, one per line in label order [default: numbered].", rich_help_panel=_DATA)]
Download = Annotated[bool, typer.Option("--download", help="Fetch torchvision data sets when their files are missing.", rich_help_panel=_DATA)]
ImageColumn = Annotated[Optional[str], typer.Option("--image-column", help="hf: and CSV data: the column of the images [default: the Image feature, else image, filename, path, id, ...].", rich_help_panel=_DATA)]
LabelColumn = Annotated[Optional[str], typer.Option("--label-column", help="hf: and CSV data: the column of the labels [default: the ClassLabel feature, else label, class, target, ...].", rich_help_panel=_DATA)]
ImageDir = Annotated[Optional[str], typer.Option("--image-dir", help="CSV data: the folder the image column is relative to [default: the CSV's folder].", rich_help_panel=_DATA)]


def data_config(data, val_split, test_split, seed, max_bad, download, class_names=None, **columns) -> DataConfig:
    """``columns``: image_column, label_column, image_dir."""
    return DataConfig(
        source=data, val_split=val_split, test_split=test_split, seed=seed, max_bad=max_bad, download=download, class_names=class_names,
        **columns,
    )



_AUG = "Augmentation (training only)"
HFlip = Annotated[bool, typer.Option("--hflip", help="Random horizontal flips.", rich_help_panel=_AUG)]
Rotate = Annotated[float, typer.Option("--rotate", min=0.0, max=180.0, help="Random rotation up to this many degrees either way.", rich_help_panel=_AUG)]
Zoom = Annotated[float, typer.Option("--zoom", min=0.0, max=0.99, help="Random zoom by up to this fraction (0.2: scale 0.8-1.2).", rich_help_panel=_AUG)]
Contrast = Annotated[float, typer.Option("--contrast", min=0.0, max=0.99, help="Random contrast change by up to this fraction.", rich_help_panel=_AUG)]
ColorJitter = Annotated[float, typer.Option("--color-jitter", min=0.0, max=0.99, help="Random brightness, contrast and saturation by this fraction.", rich_help_panel=_AUG)]
AutoAugment = Annotated[str, typer.Option("--auto-augment", help="none | trivial (TrivialAugmentWide) | rand (RandAugment).", rich_help_panel=_AUG, callback=_choice("augment", "auto_augment"))]

_OPT = "Optimisation"
Optimizer = Annotated[str, typer.Option("--optimizer", help="adam | adamw | sgd | rmsprop.", rich_help_panel=_OPT, callback=_choice("optim", "optimizer"))]
WeightDecay = Annotated[float, typer.Option("--weight-decay", min=0.0, help="Weight decay (L2); with the linear probe, 0 chooses it on the validation split.", rich_help_panel=_OPT)]
HeadFit = Annotated[str, typer.Option("--head-fit", help="auto | probe | epochs: probe fits the head to convergence on cached features (full-batch L-BFGS, like a logistic regression); epochs trains it with the optimiser (auto: probe whenever features are cached).", rich_help_panel=_OPT, callback=_choice("optim", "head_fit"))]
Momentum = Annotated[float, typer.Option("--momentum", min=0.0, max=1.0, help="Momentum of sgd and rmsprop.", rich_help_panel=_OPT)]
Nesterov = Annotated[bool, typer.Option("--nesterov", help="Nesterov momentum (sgd).", rich_help_panel=_OPT)]
Schedule = Annotated[str, typer.Option("--schedule", help="none | cosine | step | plateau | onecycle.", rich_help_panel=_OPT, callback=_choice("optim", "schedule"))]
WarmupEpochs = Annotated[int, typer.Option("--warmup-epochs", min=0, help="Linear warm-up epochs before the cosine decay.", rich_help_panel=_OPT)]
StepSize = Annotated[int, typer.Option("--step-size", min=1, help="step schedule: epochs between decays.", rich_help_panel=_OPT)]
Gamma = Annotated[float, typer.Option("--gamma", min=0.0, max=1.0, help="step and plateau schedules: decay factor.", rich_help_panel=_OPT)]
LabelSmoothing = Annotated[float, typer.Option("--label-smoothing", min=0.0, max=0.99, help="Label smoothing of the loss.", rich_help_panel=_OPT)]
GradClip = Annotated[float, typer.Option("--grad-clip", min=0.0, help="Clip the gradient norm to this; 0 turns it off.", rich_help_panel=_OPT)]
Accumulate = Annotated[int, typer.Option("--accumulate", min=1, help="Batches per optimiser step (gradient accumulation).", rich_help_panel=_OPT)]
ClassWeights = Annotated[str, typer.Option("--class-weights", help="none | balanced (inverse class frequency in the loss).", rich_help_panel=_OPT, callback=_choice("optim", "class_weights"))]

_RUN = "Run"
_SPEED = "Speed"
Epochs = Annotated[int, typer.Option("--epochs", "-e", min=1, help="Epochs to train.", rich_help_panel=_RUN)]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per batch.", rich_help_panel=_RUN)]
TrainBatchSize = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per batch, per process: in N processes (--nproc N, torchrun) the global batch is N times this, and the learning rate is not scaled.", rich_help_panel=_RUN)]
Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps.", rich_help_panel=_RUN, callback=_device)]
Amp = Annotated[str, typer.Option("--amp", help="auto | bf16 | fp16 | off. auto: bf16 (else fp16) on CUDA, off on the CPU.", rich_help_panel=_RUN, callback=_choice("run", "amp"))]
ChannelsLast = Annotated[Optional[bool], typer.Option("--channels-last/--no-channels-last", help="channels-last memory format [default: on for convolutional networks].", rich_help_panel=_SPEED, show_default=False)]
_CACHE = "Caches"
CacheFeatures = Annotated[str, typer.Option("--cache-features", help="auto | on | off: train the head on backbone features computed once (auto: when the backbone is frozen and in inference mode).", rich_help_panel=_CACHE, callback=_choice("run", "cache_features"))]
FeatureViews = Annotated[int, typer.Option("--feature-views", min=1, help="With augmentation and cached features: augmented views cached per image, one drawn per epoch.", rich_help_panel=_CACHE)]
CacheImages = Annotated[str, typer.Option("--cache-images", help="auto | memory | disk | off: decode and resize each image once (auto: memory when it fits, else disk).", rich_help_panel=_CACHE, callback=_choice("run", "cache_images"))]
CacheDir = Annotated[Optional[str], typer.Option("--cache-dir", help="Keep caches here for later runs (features are reused only when given) [default: none; images cached on disk go to $TLCLI_CACHE_DIR or ~/.cache/tlcli].", rich_help_panel=_CACHE)]
SyncBn = Annotated[bool, typer.Option("--sync-bn", help="In several processes: BatchNorm layers that train compute batch statistics over all processes' batches (SyncBatchNorm, CUDA only); which layers train is the freeze policy's and --bn-train's choice.", rich_help_panel=_RUN)]
Compile = Annotated[bool, typer.Option("--compile", help="torch.compile the model (slow first epoch).", rich_help_panel=_SPEED)]
Nproc = Annotated[int, typer.Option("--nproc", min=1, help="Train in this many processes on this machine, one per GPU (or on CPU cores), started through torch.distributed.run (torchrun) with DistributedDataParallel; --batch-size is per process. For several machines run torchrun yourself (README).", rich_help_panel=_RUN)]
Workers = Annotated[Optional[int], typer.Option("--workers", min=0, help="Data loader processes [default: 0 on 2 cores or fewer, else cores-1, at most 8].", rich_help_panel=_RUN)]
Deterministic = Annotated[bool, typer.Option("--deterministic", help="Deterministic algorithms: identical runs for the same seed.", rich_help_panel=_RUN)]
Tta = Annotated[bool, typer.Option("--tta", help="Test-time augmentation: average each prediction over the image, a 1.1x zoom and rotations of 8 degrees either way (4x the compute).")]
Monitor = Annotated[str, typer.Option("--monitor", help="val_loss | val_acc: picks best.pt and drives early stopping.", rich_help_panel=_RUN, callback=_choice("run", "monitor"))]
Patience = Annotated[int, typer.Option("--patience", min=0, help="Stop after this many epochs without improvement; 0 never stops early.", rich_help_panel=_RUN)]
Out = Annotated[Optional[str], typer.Option("--out", "-o", help="Run folder [default: DATA-ARCH-TIME in checkpoints/].", rich_help_panel=_RUN)]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Reuse an --out folder that already holds a run.", rich_help_panel=_RUN)]
Tensorboard = Annotated[bool, typer.Option("--tensorboard", help="Also write TensorBoard scalars to <run>/tensorboard (the tensorboard extra: pip install tlcli[tensorboard]).", rich_help_panel=_RUN)]
