"""``tlcli report``: report.md and report.html for a run or a study."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from tlcli.cli import options, output


def report(
    target: Annotated[Optional[str], typer.Argument(help="A run folder, run name, checkpoint or study folder [default: the latest run].")] = None,
    as_json: options.JsonOption = False,
) -> None:
    """Write report.md and report.html (images embedded) next to a run or a study.

    A run's report: TL;DR, data set, model summary, configuration, learning curves, final
    metrics, per-class table, confusion matrix, most-confused pairs and mistakes. A study's:
    the comparison table and its six figures.
    """
    from pathlib import Path

    from tlcli.report.document import write_report
    from tlcli.runs import checkpoints_root, resolve_checkpoint

    if target is None:
        path = resolve_checkpoint(None)
    else:
        path = Path(target) if Path(target).exists() else checkpoints_root() / target
        if not path.exists():
            path = resolve_checkpoint(target)
    files = write_report(path)
    if as_json:
        output.print_json(files)
        return
    output.out.print("\n".join(f"{name}: {file}" for name, file in files.items()), markup=False)
