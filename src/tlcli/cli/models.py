"""``tlcli models``: the architectures ``--arch`` accepts."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from tlcli.cli import options, output


def models(
    pattern: Annotated[Optional[str], typer.Argument(help="Glob or substring to filter by (resnet*, vit); timm:<glob> lists timm's models [default: the baselines and every torchvision classifier].")] = None,
    as_json: options.JsonOption = False,
) -> None:
    """List the architectures tlcli can build, with their ImageNet parameter count and input size."""
    from tlcli.models.registry import list_architectures

    found = list_architectures(pattern)
    if as_json:
        output.print_json([vars(info) for info in found])
        return
    table = Table("architecture", "source", "params (ImageNet)", "input", "pretrained weights")
    for info in found:
        params = f"{info.params / 1e6:.1f} M" if info.params else "-"
        table.add_row(info.name, info.source, params, str(info.input_size or "-"), info.pretrained or "-")
    output.print_table(table)
    output.info(f"{len(found)} architectures")
