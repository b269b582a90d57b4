"""``tlcli summary``: the torchinfo table of a model as it would train."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from tlcli import api
from tlcli.cli import groups, options, output
from tlcli.core.config import DEFAULT_ARCH

_S = options.defaults_of(api.summary)


@groups.with_options(groups.MODEL, leave_out=("arch",))
def summary(
    ctx: typer.Context,
    checkpoint: Annotated[Optional[str], typer.Argument(help="A checkpoint file, run folder or run name to summarise as saved [default: the latest run, unless --arch is given].")] = None,
    arch: Annotated[Optional[str], typer.Option("--arch", "-a", help=f"Architecture to summarise [default: the latest run's checkpoint if any, else {DEFAULT_ARCH}].", rich_help_panel="Model")] = None,
    depth: Annotated[int, typer.Option("--depth", min=0, help="How many levels of nested layers to show.")] = _S["depth"],
    as_json: options.JsonOption = False,
    **values,
) -> None:
    """Print a model's layers, shapes, parameter counts and which of them train.

    With --arch no weights are read: the table describes the architecture, its new head and
    the freeze policy, e.g. tlcli summary --arch efficientnet_b0 --num-classes 150 --freeze backbone.
    With a checkpoint (or bare, when a run exists) it shows the model as saved.
    """
    overview = api.summary(checkpoint, arch=arch, depth=depth, **groups.given(ctx, values))
    for note in overview.notes:
        output.info(note)
    if overview.source is not None:
        output.info(f"showing the model saved in {overview.source}")
    if as_json:
        output.print_json(overview.to_dict())
        return
    output.info(f"{overview.arch}: {overview.num_classes} classes, freeze policy '{overview.freeze}'")
    output.out.print(str(overview), markup=False)
