"""``tlcli sanity`` and ``tlcli lr-find``: checks before a long run. Both take every train option."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from tlcli.cli import options, output
from tlcli.api.progress import make_observer
from tlcli.cli.train_options import with_train_options
from tlcli.config import TrainConfig

# Neither writes a run nor trains epochs: the options of a run folder and of early stopping would be ignored.
_NOT_A_RUN = ("out", "overwrite", "tensorboard", "patience")


@with_train_options(leave_out=_NOT_A_RUN)
def sanity(
    config: TrainConfig,
    batches: Annotated[int, typer.Option("--batches", min=1, help="Size of the tiny subset to over-fit, in batches.")] = 2,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Passes over the tiny subset at most.")] = 150,
    as_json: options.JsonOption = False,
) -> int:
    """A checklist before a long run: shapes, one forward and backward pass,
    an initial loss near ln(classes), and over-fitting 2 batches to 99 % accuracy. Exit 1 on any failure.
    """
    from tlcli.diagnostics import run_sanity

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


@with_train_options(leave_out=_NOT_A_RUN)
def lr_find(
    config: TrainConfig,
    start_lr: Annotated[float, typer.Option("--start-lr", help="Lowest learning rate tried.")] = 1e-7,
    end_lr: Annotated[float, typer.Option("--end-lr", help="Highest learning rate tried.")] = 10.0,
    iterations: Annotated[int, typer.Option("--iterations", min=5, help="Batches in the sweep.")] = 100,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Where to draw the curve [default: lr-find-ARCH-TIME.png in checkpoints/].")] = None,
    as_json: options.JsonOption = False,
) -> None:
    """The learning-rate range test: raise the rate exponentially for a number of batches, plot the
    smoothed loss, and suggest the rate where it falls fastest (for the current freeze state).
    """
    from tlcli.diagnostics import lr_find as find
    from tlcli.runs import checkpoints_root

    target = plot or checkpoints_root() / f"lr-find-{config.model.arch.replace(':', '_')}-{datetime.now():%Y%m%d-%H%M%S}.png"
    observer = make_observer()
    try:
        finding = find(config, start_lr=start_lr, end_lr=end_lr, iterations=iterations, out=target, observer=observer)
    finally:
        observer.close()
    for note in finding.notes:
        output.warn(note)
    if as_json:
        output.print_json(finding.to_dict())
        return
    output.out.print(f"suggested learning rate: {finding.suggested_lr:.2e}\nplot: {finding.plot}", markup=False)
    output.info("it applies where the optimiser trains: --lr of 'train --head-fit epochs' or of a whole network, or of 'finetune' "
                "after unfreezing; phase 1's default linear probe fits the head by L-BFGS, without a learning rate")
