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
    from tlcli.evaluation.report.document import write_report

    files = write_report(target)
    if as_json:
        output.print_json(files)
        return
    output.out.print("\n".join(f"{name}: {file}" for name, file in files.items()), markup=False)
