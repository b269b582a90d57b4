"""``tlcli train`` (phase 1, or a whole from-scratch run) and ``tlcli finetune`` (phase 2)."""

from __future__ import annotations

import math
from typing import Annotated, Optional

import typer

from tlcli import api
from tlcli.api.options import only_epochs
from tlcli.cli import groups, options, output
from tlcli.cli.config_files import CommandConfigFile, ConfigFile

EPILOG = ("Exit codes: 0 success (also: --resume auto found the run already finished), 1 runtime failure (one 'Error:' line), "
          "2 usage error, 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP, 138 stopped after an epoch's checkpoint on SIGUSR1 (last.pt is intact in each).")
RESUME_HELP = ("auto: resume the run in --out if it holds a checkpoint, else start it (the line for cron jobs); "
               "or a run folder or last.pt to continue (then only --epochs may change)")


def _render(result) -> None:
    document = result.to_dict()
    final = document["final"] or {}
    lines = [f"run: {document['run_dir']}"]
    if document["start"]:
        lines.append(f"phase {document['phase']} start: val loss {document['start']['val_loss']:.4f} acc {document['start']['val_acc']:.4f}")
    if final:
        val = "" if math.isnan(final["val_acc"]) else f", val loss {final['val_loss']:.4f} acc {final['val_acc']:.4f}"
        lines.append(f"last epoch {final['epoch']}: train loss {final['train_loss']:.4f} acc {final['train_acc']:.4f}{val}")
    best, where = document["best_metric"], f"epoch {document['best_epoch']}"
    if best is None:
        lines.append("no best epoch")
    elif document["best_phase"] != document["phase"]:
        lines.append(f"best {document['monitor']}: {best:.4f} at {where} (phase {document['best_phase']}): no epoch of this phase beat it, "
                     f"best.pt holds phase {document['best_phase']}'s model")
    else:
        lines.append(f"best {document['monitor']}: {best:.4f} at {where}")
    if document["stopped_early"]:
        lines.append("stopped early")
    lines += [f"{name}: {path}" for name, path in document["files"].items()]
    output.out.print("\n".join(lines), markup=False)


@groups.with_options(groups.TRAIN)
def train(
    ctx: typer.Context,
    config_file: ConfigFile = None,
    folds: Annotated[int, typer.Option("--folds", callback=options.folds, help="Stratified K-fold cross-validation on train+val: one model per fold, mean ± std (0: off).", rich_help_panel="Run")] = 0,
    resume: Annotated[Optional[str], typer.Option("--resume", help=RESUME_HELP + " [default: a new run].", rich_help_panel="Run")] = None,
    nproc: options.Nproc = 1,
    as_json: options.JsonOption = False,
    **values,
) -> None:
    """Train a model: phase 1 of transfer learning (backbone frozen), or a whole from-scratch run.

    With pretrained weights the backbone is frozen by default (--freeze backbone) and its head is
    fitted; with --weights none everything trains. Writes best.pt, last.pt, config.json,
    history.csv, curves.png and log.txt to the run folder.
    """
    if nproc > 1:
        _relaunch(nproc)
    given = groups.given(ctx, values)
    if resume not in (None, "auto"):
        only_epochs({**given, **({"folds": folds} if folds else {})}, spell=_flag)  # named as typed, before the API names them
    result = api.train(**given, folds=folds, resume=resume)
    if folds:
        _show_folds(result, folds, as_json)
    else:
        _show(result, as_json)


def _relaunch(nproc: int) -> None:
    """This command again, in ``nproc`` processes under torchrun; exits with the launcher's code."""
    from tlcli.cli import arguments
    from tlcli.core.host import launch

    given, passed = arguments(), []
    for index, argument in enumerate(given):
        if argument == "--nproc" or argument.startswith("--nproc=") or (index and given[index - 1] == "--nproc"):
            continue
        passed.append(argument)
    raise typer.Exit(launch(nproc, passed))


def _show(result, as_json: bool) -> None:
    """The result, once: under torchrun every process has it, rank 0 prints it."""
    from tlcli.engine.distributed import is_main_process

    if is_main_process():
        output.print_json(result.to_dict()) if as_json else _render(result)


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _show_folds(result, folds: int, as_json: bool) -> None:
    from tlcli.cli.compare import render_table

    if as_json:
        output.print_json(result.to_dict())
        return
    per_fold = [{**run.row(), "name": f"fold {run.fold + 1}"} for run in result.runs]
    render_table(per_fold + [{**result.table[0], "name": "mean ± std"}], f"{folds}-fold cross-validation of {result.runs[0].arch}")
    output.out.print("\n".join(f"{n}: {p}" for n, p in {**result.files, **result.figures}.items()), markup=False)


@groups.with_options(groups.FINETUNE)
def finetune(
    ctx: typer.Context,
    config_file: CommandConfigFile = None,
    resume: Annotated[Optional[str], typer.Option("--resume", help=RESUME_HELP + " (a phase-2 run) [default: a new run].", rich_help_panel="Run")] = None,
    nproc: options.Nproc = 1,
    as_json: options.JsonOption = False,
    **values,
) -> None:
    """Phase 2: unfreeze (all by default) and fine-tune a trained run at a lower learning rate.

    Loads the run's best.pt with its trained head, continues its history, and writes a new run
    folder that records its parent. Data and model are phase 1's; the optimiser, augmentation
    (--hflip, --rotate, ...) and run settings below default to phase 1's and may be changed here.
    Where phase 1 had none, phase 2 augments (--rotate 10 --zoom 0.15 --contrast 0.2), smooths
    labels (0.1) and stops after 3 epochs without a better validation accuracy.
    """
    if nproc > 1:
        _relaunch(nproc)
    source = values.pop("source")
    given = groups.given(ctx, values)
    if resume not in (None, "auto"):
        only_epochs(given, spell=_flag)
    _show(api.finetune(source, resume=resume, **given), as_json)
