"""``tlcli lr-find``: the learning-rate range test; takes every train option but a run folder's."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli.api.progress import make_observer
from tlcli.cli import groups, options, output
from tlcli.cli.config_files import ConfigFile
from tlcli.cli.sanity import NOT_A_RUN


@groups.with_options(groups.TRAIN, leave_out=NOT_A_RUN)
def lr_find(
    config_file: ConfigFile = None,
    start_lr: Annotated[float, typer.Option("--start-lr", help="Lowest learning rate tried.")] = 1e-7,
    end_lr: Annotated[float, typer.Option("--end-lr", help="Highest learning rate tried.")] = 10.0,
    iterations: Annotated[int, typer.Option("--iterations", min=5, help="Batches in the sweep.")] = 100,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Where to draw the curve [default: lr-find-ARCH-TIME.png in checkpoints/].")] = None,
    as_json: options.JsonOption = False,
    **values,
) -> None:
    """The learning-rate range test: raise the rate exponentially for a number of batches, plot the
    smoothed loss, and suggest the rate where it falls fastest (for the current freeze state).
    """
    from tlcli.experiments.lr_find import lr_find as find
    from tlcli.run.locate import checkpoints_root

    config = groups.config_from(values)
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
