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
    """List the architectures tlcli can build, with their ImageNet parameter count, input size, and
    whether their pretrained weights are already cached (so train works offline)."""
    from tlcli.models.registry import list_architectures

    found = list_architectures(pattern)
    if as_json:
        output.print_json([vars(info) for info in found])
        return
    table = Table("architecture", "source", "params (ImageNet)", "input", "pretrained weights", "cached")
    for info in found:
        params = f"{info.params / 1e6:.1f} M" if info.params else "-"
        cached = "-" if info.cached is None else ("yes" if info.cached else "no")
        table.add_row(info.name, info.source, params, str(info.input_size or "-"), info.pretrained or "-", cached)
    output.print_table(table)
    output.info(f"{len(found)} architecture{'' if len(found) == 1 else 's'}")
