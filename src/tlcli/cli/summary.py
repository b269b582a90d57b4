"""``tlcli summary``: the torchinfo table of a model as it would train."""

from __future__ import annotations

from typing import Annotated

import typer

from tlcli.cli import options, output
from tlcli.config import DEFAULT_ARCH


def summary(
    arch: options.Arch = DEFAULT_ARCH,
    num_classes: options.NumClasses = None,
    weights: options.Weights = None,
    dropout: options.Dropout = None,
    hidden: options.Hidden = "128,64",
    freeze: options.Freeze = None,
    bn_train: options.BnTrain = False,
    input_size: options.InputSize = None,
    depth: Annotated[int, typer.Option("--depth", min=0, help="How many levels of nested layers to show.")] = 3,
    as_json: options.JsonOption = False,
) -> None:
    """Print a model's layers, shapes, parameter counts and which of them train.

    No weights are read: the table describes the architecture, its new head and the freeze
    policy, e.g. tlcli summary --arch efficientnet_b0 --num-classes 150 --freeze backbone
    """
    from tlcli.models.summary import summarize_architecture

    config = options.model_config(arch, num_classes, weights, dropout, hidden, freeze, bn_train, input_size)
    built, table = summarize_architecture(config, depth=depth)
    if as_json:
        output.print_json({"model": built.describe(), "freeze": built.freeze_policy, "preprocess": built.preprocess.to_dict(), **table.to_dict()})
        return
    output.info(f"{built.arch}: {built.num_classes} classes, freeze policy '{built.freeze_policy}'")
    output.out.print(table.table, markup=False)
