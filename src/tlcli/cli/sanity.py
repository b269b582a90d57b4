"""``tlcli sanity``: a checklist before a long run; takes every train option but a run folder's."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tlcli.api.progress import make_observer
from tlcli.cli import groups, options, output
from tlcli.cli.config_files import ConfigFile

# Neither writes a run nor trains epochs: the options of a run folder and of early stopping would be ignored.
NOT_A_RUN = ("out", "overwrite", "tensorboard", "patience")


@groups.with_options(groups.TRAIN, leave_out=NOT_A_RUN)
def sanity(
    config_file: ConfigFile = None,
    batches: Annotated[int, typer.Option("--batches", min=1, help="Size of the tiny subset to over-fit, in batches.")] = 2,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Passes over the tiny subset at most.")] = 150,
    as_json: options.JsonOption = False,
    **values,
) -> int:
    """A checklist before a long run: shapes, one forward and backward pass,
    an initial loss near ln(classes), and over-fitting 2 batches to 99 % accuracy. Exit 1 on any failure.
    """
    from tlcli.experiments.sanity import run_sanity

    config = groups.config_from(values)
    observer = make_observer()
    try:
        report = run_sanity(config, batches=batches, steps=steps, observer=observer)
    finally:
        observer.close()
    if as_json:
        output.print_json(report.to_dict())
    else:
        table = Table("check", "result", "detail", title="sanity")
        for check in report.checks:
            table.add_row(check.name, "pass" if check.passed else "FAIL", check.detail)
        output.print_table(table)
    if not report.passed:
        output.error("sanity check failed: " + ", ".join(c.name for c in report.checks if not c.passed))
    return 0 if report.passed else 1
