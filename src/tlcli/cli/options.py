"""Options of the commands' own that no configuration field declares (the output format, the
number of processes, test-time augmentation, an evaluation's batch), and the API verbs' defaults
for the commands over them."""

from __future__ import annotations

import inspect
from typing import Annotated

import typer

from tlcli.core.config import RUN, check_folds
from tlcli.core.errors import ConfigError


def defaults_of(function) -> dict:
    """The defaults of an API verb's keyword arguments: the one place a command's defaults live."""
    return {name: p.default for name, p in inspect.signature(function).parameters.items() if p.default is not inspect.Parameter.empty}


def folds(value: int) -> int:
    """--folds of train and compare: 0 (off) or at least 2."""
    try:
        return check_folds(value)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per batch.", rich_help_panel=RUN)]
Nproc = Annotated[int, typer.Option("--nproc", min=1, help="Train in this many processes on this machine, one per GPU (or on CPU cores), started through torch.distributed.run (torchrun) with DistributedDataParallel; --batch-size is per process. For several machines run torchrun yourself (README).", rich_help_panel=RUN)]
Tta = Annotated[bool, typer.Option("--tta", help="Test-time augmentation: average each prediction over the image, a 1.1x zoom and rotations of 8 degrees either way (4x the compute).")]
