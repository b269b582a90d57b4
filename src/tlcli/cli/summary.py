"""``tlcli summary``: the torchinfo table of a model as it would train."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from tlcli import api
from tlcli.cli import options, output
from tlcli.cli.train_options import OPTION_DEFAULTS
from tlcli.config import DEFAULT_ARCH

_S = options.defaults_of(api.summary)


def summary(
    ctx: typer.Context,
    checkpoint: Annotated[Optional[str], typer.Argument(help="A checkpoint file, run folder or run name to summarise as saved [default: the latest run, unless --arch is given].")] = None,
    arch: Annotated[Optional[str], typer.Option("--arch", "-a", help=f"Architecture to summarise [default: the latest run's checkpoint if any, else {DEFAULT_ARCH}].", rich_help_panel="Model")] = None,
    num_classes: options.NumClasses = OPTION_DEFAULTS["num_classes"],
    weights: options.Weights = OPTION_DEFAULTS["weights"],
    dropout: options.Dropout = OPTION_DEFAULTS["dropout"],
    hidden: options.Hidden = OPTION_DEFAULTS["hidden"],
    freeze: options.Freeze = OPTION_DEFAULTS["freeze"],
    bn_train: options.BnTrain = OPTION_DEFAULTS["bn_train"],
    input_size: options.InputSize = OPTION_DEFAULTS["input_size"],
    depth: Annotated[int, typer.Option("--depth", min=0, help="How many levels of nested layers to show.")] = _S["depth"],
    as_json: options.JsonOption = False,
) -> None:
    """Print a model's layers, shapes, parameter counts and which of them train.

    With --arch no weights are read: the table describes the architecture, its new head and
    the freeze policy, e.g. tlcli summary --arch efficientnet_b0 --num-classes 150 --freeze backbone.
    With a checkpoint (or bare, when a run exists) it shows the model as saved.
    """
    model_options = {"num_classes": num_classes, "weights": weights, "dropout": dropout, "hidden": hidden, "freeze": freeze,
                     "bn_train": bn_train, "input_size": input_size}
    given = {name: value for name, value in model_options.items() if ctx.get_parameter_source(name).name != "DEFAULT"}
    overview = api.summary(checkpoint, arch=arch, depth=depth, **given)
    for note in overview.notes:
        output.info(note)
    if overview.source is not None:
        output.info(f"showing the model saved in {overview.source}")
    if as_json:
        output.print_json(overview.to_dict())
        return
    output.info(f"{overview.arch}: {overview.num_classes} classes, freeze policy '{overview.freeze}'")
    output.out.print(str(overview), markup=False)
