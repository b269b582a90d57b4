"""``tlcli train`` (phase 1, or a whole from-scratch run) and ``tlcli finetune`` (phase 2)."""

from __future__ import annotations

import math
from typing import Annotated, Optional

import typer

from tlcli import api
from tlcli.api.options import FINETUNE_DEFAULTS, only_epochs
from tlcli.cli import options, output
from tlcli.cli.train_options import CommandConfigFile, with_phase1_overrides, with_train_options

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


@with_train_options
def train(
    given: dict,
    folds: Annotated[int, typer.Option("--folds", callback=options.folds, help="Stratified K-fold cross-validation on train+val: one model per fold, mean ± std (0: off).", rich_help_panel="Run")] = 0,
    resume: Annotated[Optional[str], typer.Option("--resume", help=RESUME_HELP + " [default: a new run].", rich_help_panel="Run")] = None,
    nproc: options.Nproc = 1,
    as_json: options.JsonOption = False,
) -> None:
    """Train a model: phase 1 of transfer learning (backbone frozen), or a whole from-scratch run.

    With pretrained weights the backbone is frozen by default (--freeze backbone) and its head is
    fitted; with --weights none everything trains. Writes best.pt, last.pt, config.json,
    history.csv, curves.png and log.txt to the run folder.
    """
    if nproc > 1:
        _relaunch(nproc)
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
    from tlcli.host import launch

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


_F = FINETUNE_DEFAULTS


@with_phase1_overrides
def finetune(
    ctx: typer.Context,
    source: Annotated[str, typer.Option("--from", help="The phase-1 run: a run folder, a run name under checkpoints/, or a checkpoint file.")],
    config_file: CommandConfigFile = None,
    unfreeze: Annotated[str, typer.Option("--unfreeze", callback=options.check_unfreeze, help="all, or a --freeze policy for what stays frozen: last:N trains the last N layers, blocks:N keeps the first N stages frozen.")] = _F["unfreeze"],
    epochs: options.Epochs = _F["epochs"],
    lr: Annotated[float, typer.Option("--lr", callback=options.positive, help="Learning rate of the head, x>0 (the usual phase-2 rate, a tenth of phase 1's 1e-3).", rich_help_panel="Optimisation")] = _F["lr"],
    backbone_lr_mult: Annotated[Optional[float], typer.Option("--backbone-lr-mult", min=0.0, show_default=False, help="Backbone learning rate as a multiple of the head's [default: chosen from 0.1 and 1 by a short trial on the validation split].", rich_help_panel="Optimisation")] = _F["backbone_lr_mult"],
    ema: Annotated[bool, typer.Option("--ema/--no-ema", help="Keep a moving average of the weights, validated beside them each epoch; best.pt takes whichever is better.", rich_help_panel="Optimisation")] = _F["ema"],
    wise_ft: Annotated[bool, typer.Option("--wise-ft/--no-wise-ft", help="At the end, mix phase 1's and phase 2's best weights in the proportion the validation split prefers (phase 1's own included).", rich_help_panel="Optimisation")] = _F["wise_ft"],
    bn_train: options.BnTrain = _F["bn_train"],
    monitor: Annotated[str, typer.Option("--monitor", callback=options.check_monitor, rich_help_panel="Run",
                                         help="val_acc | val_loss: picks best.pt (after the linear probe the val loss stays flat while accuracy climbs).")] = _F["monitor"],
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Run folder [default: DATA-ARCH-TIME-ft beside phase 1's].", rich_help_panel="Run")] = None,
    overwrite: options.Overwrite = False,
    resume: Annotated[Optional[str], typer.Option("--resume", help=RESUME_HELP + " (a phase-2 run) [default: a new run].", rich_help_panel="Run")] = None,
    nproc: options.Nproc = 1,
    as_json: options.JsonOption = False,
    overrides: dict | None = None,
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
    own = {"unfreeze": unfreeze, "epochs": epochs, "lr": lr, "backbone_lr_mult": backbone_lr_mult, "ema": ema, "wise_ft": wise_ft,
           "bn_train": bn_train, "monitor": monitor, "out": out, "overwrite": overwrite}
    given = {name: value for name, value in own.items() if ctx.get_parameter_source(name).name != "DEFAULT"}
    if resume not in (None, "auto"):
        only_epochs({**given, **(overrides or {})}, spell=_flag)
    _show(api.finetune(source, resume=resume, **given, **(overrides or {})), as_json)
