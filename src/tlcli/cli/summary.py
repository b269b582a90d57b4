"""``tlcli summary``: the torchinfo table of a model as it would train."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from tlcli.cli import options, output
from tlcli.config import DEFAULT_ARCH


def summary(
    checkpoint: Annotated[Optional[str], typer.Argument(help="A checkpoint file, run folder or run name to summarise as saved [default: the latest run, unless --arch is given].")] = None,
    arch: Annotated[Optional[str], typer.Option("--arch", "-a", help=f"Architecture to summarise [default: the latest run's checkpoint if any, else {DEFAULT_ARCH}].", rich_help_panel="Model")] = None,
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

    With --arch no weights are read: the table describes the architecture, its new head and
    the freeze policy, e.g. tlcli summary --arch efficientnet_b0 --num-classes 150 --freeze backbone.
    With a checkpoint (or bare, when a run exists) it shows the model as saved.
    """
    from tlcli.errors import CheckpointError
    from tlcli.checkpoint import load_checkpoint, model_from_checkpoint
    from tlcli.models.summary import summarize_architecture, summarize_built
    from tlcli.runs import resolve_checkpoint

    path = None
    if checkpoint is not None:
        path = resolve_checkpoint(checkpoint)
    elif arch is None:
        try:
            path = resolve_checkpoint(None)
        except CheckpointError:
            output.info(f"no run in checkpoints/ yet: showing {DEFAULT_ARCH} with its ImageNet head")
    if path is not None:
        output.info(f"showing the model saved in {path}")
        built = model_from_checkpoint(load_checkpoint(path))
        table = summarize_built(built, depth)
    else:
        config = options.model_config(arch or DEFAULT_ARCH, num_classes, weights, dropout, hidden, freeze, bn_train, input_size)
        built, table = summarize_architecture(config, depth=depth)
    if as_json:
        output.print_json({"model": built.describe(), "freeze": built.freeze_policy, "preprocess": built.preprocess.to_dict(), **table.to_dict()})
        return
    output.info(f"{built.arch}: {built.num_classes} classes, freeze policy '{built.freeze_policy}'")
    output.out.print(table.table, markup=False)
