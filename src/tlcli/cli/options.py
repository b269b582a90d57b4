"""Options shared by several commands, declared once."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from tlcli.config import DataConfig, ModelConfig
from tlcli.errors import TlcliError

_DATA = "Data"
_MODEL = "Model"

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]

Arch = Annotated[str, typer.Option("--arch", "-a", help="Architecture: a torchvision name, timm:<name>, simple_cnn or mlp.", rich_help_panel=_MODEL)]
NumClasses = Annotated[Optional[int], typer.Option("--num-classes", min=2, help="Size of the new head [default: the data's classes, else the weights' own head].", rich_help_panel=_MODEL)]
Weights = Annotated[Optional[str], typer.Option("--weights", help="imagenet, none, or a state dict / tlcli checkpoint file [default: imagenet where the architecture has weights].", rich_help_panel=_MODEL)]
Dropout = Annotated[Optional[float], typer.Option("--dropout", min=0.0, max=0.99, help="Dropout before the new linear head [default: the architecture's own].", rich_help_panel=_MODEL)]
Hidden = Annotated[str, typer.Option("--hidden", help="Hidden layer sizes of the mlp baseline, comma-separated.", rich_help_panel=_MODEL)]
Freeze = Annotated[Optional[str], typer.Option("--freeze", help="none | backbone | all | last:N | blocks:N | re:PATTERN [default: backbone with pretrained weights, else none].", rich_help_panel=_MODEL)]
BnTrain = Annotated[bool, typer.Option("--bn-train", help="Let frozen BatchNorm layers update their running statistics.", rich_help_panel=_MODEL)]
InputSize = Annotated[Optional[int], typer.Option("--input-size", min=4, help="Square input side [default: the weights' or architecture's preset].", rich_help_panel=_MODEL)]

Data = Annotated[str, typer.Option("--data", "-d", help="A folder, a name under data/, or a built-in set (digits, mnist, fashion_mnist, cifar10, cifar100).", rich_help_panel=_DATA)]
ValSplit = Annotated[float, typer.Option("--val-split", help="Fraction held out for validation when the folder is not pre-split.", rich_help_panel=_DATA)]
TestSplit = Annotated[float, typer.Option("--test-split", help="Fraction held out for testing when the folder is not pre-split.", rich_help_panel=_DATA)]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the split (and, in training, of everything else).", rich_help_panel=_DATA)]
MaxBad = Annotated[float, typer.Option("--max-bad", min=0.0, help="Unreadable images tolerated (skipped with a warning): a fraction below 1, else a count.", rich_help_panel=_DATA)]
Download = Annotated[bool, typer.Option("--download", help="Fetch torchvision data sets when their files are missing.", rich_help_panel=_DATA)]


def parse_hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise TlcliError(f"--hidden takes comma-separated whole numbers such as 128,64; got '{text}'") from None
    if not sizes:
        raise TlcliError("--hidden needs at least one layer size, such as 128,64")
    return sizes


def model_config(arch, num_classes, weights, dropout, hidden, freeze, bn_train, input_size) -> ModelConfig:
    return ModelConfig(
        arch=arch,
        num_classes=num_classes,
        weights=weights,
        dropout=dropout,
        hidden=parse_hidden(hidden),
        freeze=freeze,
        bn_train=bn_train,
        input_size=input_size,
    )


def data_config(data, val_split, test_split, seed, max_bad, download) -> DataConfig:
    return DataConfig(source=data, val_split=val_split, test_split=test_split, seed=seed, max_bad=max_bad, download=download)

