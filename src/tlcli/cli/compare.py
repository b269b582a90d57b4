"""``tlcli compare``: several configurations on the same split and seed, as one table and six figures."""

from __future__ import annotations

import itertools
import math
import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from tlcli import api
from tlcli.cli import options, output
from tlcli.cli import groups
from tlcli.cli.config_files import check_toml_type, read_options_file
from tlcli.api.options import train_config as config_of
from tlcli.cli.groups import option_values
from tlcli.core.config import check_folds
from tlcli.core.errors import ConfigError

# Train options that only the study sets: where each run goes.
_PER_STUDY = ("out", "overwrite")
EPILOG = "Exit codes: 0 success, 1 runtime failure, 2 usage error (also a bad option inside --run/--sweep/--base or --config), 128+N ended by signal N (130 Ctrl-C, 143 SIGTERM) (run it again with the same --out to finish)."


def parse_run(text: str) -> tuple[str, str]:
    """``"NAME: OPTIONS"`` -> (name, options)."""
    name, sep, rest = text.partition(":")
    if not sep or not name.strip():
        raise ConfigError(f"--run takes 'NAME: OPTIONS', e.g. 'cnn: --arch simple_cnn'; got '{text}'")
    return name.strip(), rest.strip()


def parse_sweep(text: str) -> tuple[str, list[str]]:
    """``"freeze=blocks:0,blocks:1"`` -> ("freeze", ["blocks:0", "blocks:1"])."""
    key, sep, values = text.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise ConfigError(f"--sweep takes OPTION=V1,V2,..., e.g. freeze=blocks:0,blocks:1; got '{text}'")
    return key.strip(), values.split(",")


def sweep_grid(sweeps: list[tuple[str, list]]) -> list[tuple[str, str]]:
    """One (name, options) per combination of the swept options' values: ``hidden=32 seed=1``,
    ``--hidden 32 --seed 1``. One option swept twice is a ConfigError."""
    axes, flags = [], set()
    for key, values in sweeps:
        flag = "--" + key.lstrip("-").replace("_", "-")
        if flag in flags:
            raise ConfigError(f"{flag} is swept twice; sweep each option once, with all its values ({key}=V1,V2,...)")
        flags.add(flag)
        axis = [(f"{key}={value}", f"{flag} {shlex.quote(value)}") for value in _text(values)]
        if not axis:
            raise ConfigError(f"the sweep of {key} has no values; give them as {key}=V1,V2")
        axes.append(axis)
    return [(" ".join(name for name, _ in combination), " ".join(opts for _, opts in combination))
            for combination in itertools.product(*axes)] if axes else []


def _text(values: list) -> list[str]:
    return [value for value in (str(v).strip() for v in values) if value]


def _study_files(paths: list[Path]) -> tuple[dict, list[str], int, list[tuple[str, str]], list[tuple[str, list]]]:
    """Study files, in order: train options as in ``train --config`` (shared by every run, a
    later file's over an earlier's), and each file's base, folds, [runs] and [sweep]."""
    values, bases, folds, runs, sweeps = {}, [], 0, [], []
    for path in paths:
        file_values, document = read_options_file(path, extra=("base", "folds", "runs", "sweep"), leave_out=_PER_STUDY)
        values.update(file_values)
        for key, kind in (("base", str), ("folds", int)):
            if key in document:
                check_toml_type(path, key, document[key], kind)
        for key in ("runs", "sweep"):
            if not isinstance(document.get(key, {}), dict):
                raise ConfigError(f"{path}: {key} must be a table, [{key}]")
        if "folds" in document:
            try:
                folds = check_folds(document["folds"])
            except ConfigError as exc:
                raise ConfigError(f"{path}: bad value for folds: {exc}") from None
        bases.append(document.get("base", ""))
        runs += [(str(name), str(opts)) for name, opts in document.get("runs", {}).items()]
        sweeps += [(key, value if isinstance(value, list) else [value]) for key, value in document.get("sweep", {}).items()]
    return values, bases, folds, runs, sweeps


def _per_run(arguments: list[str]) -> list[str]:
    forbidden = {"--out", "-o", "--resume", "--overwrite", "--json"} & set(arguments)
    if forbidden:
        raise ConfigError(f"{', '.join(sorted(forbidden))} cannot be set per run: the study decides where runs go")
    return arguments


def train_config(arguments: list[str], defaults: dict):
    """A TrainConfig from 'tlcli train' options given as a list of arguments, over ``defaults``."""
    return config_of(**option_values(_per_run(arguments), defaults))


def _shared(given: dict, file_values: dict, file_bases: list[str], base: str) -> dict:
    """The options every run starts from: the study files' (their keys, then each one's base),
    the train options given directly, then --base. Each layer is parsed on its own, over the
    ones before, so a later one wins without giving an option twice in one parse."""
    shared = file_values
    for file_base in file_bases:
        shared = option_values(_per_run(shlex.split(file_base)), shared)
    return option_values(_per_run(shlex.split(base)), {**shared, **given})


def _title(given: dict, base: str) -> str:
    direct = " ".join(f"--{name.replace('_', '-')}" + ("" if value is True else f" {value}") for name, value in given.items())
    return f"{direct} {base}".strip()


@groups.with_options(groups.TRAIN, leave_out=_PER_STUDY)
def compare(
    ctx: typer.Context,
    run: Annotated[Optional[list[str]], typer.Option("--run", "-r", help="A configuration as 'NAME: TRAIN OPTIONS'; repeat for each [default: none].")] = None,
    sweep: Annotated[Optional[list[str]], typer.Option("--sweep", "-s", help="One option's values, one run each: OPTION=V1,V2,... (e.g. freeze=blocks:0,blocks:1); repeated, the runs are every combination of the sweeps' values (--sweep hidden=32,64 --sweep seed=1,2: 4 runs) [default: none].")] = None,
    study_file: Annotated[Optional[list[Path]], typer.Option("--config", help="A TOML study file: train options as in 'train --config', base = '...', folds = K, [runs] NAME = '...', [sweep] OPTION = [...] (several keys: every combination); repeat it to apply several files in order [default: none].")] = None,
    base: Annotated[str, typer.Option("--base", help="Train options every run shares, as one string for scripts, e.g. '--data digits --epochs 5' [default: none].", show_default=False)] = "",
    folds: Annotated[int, typer.Option("--folds", callback=options.folds, help="Stratified K-fold cross-validation of every configuration (0: off).")] = 0,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Study folder; reuse it to finish an interrupted study [default: checkpoints/study-TIME].")] = None,
    as_json: options.JsonOption = False,
    **values,
) -> None:
    """Train several configurations on the same data split and seed, and compare them.

    Train options given directly (or in --base) are shared by every run; a run's own options
    win. Prints and writes (comparison.csv/json) a table of trainable/total parameters, epochs,
    training time, best val accuracy and loss, test accuracy, macro F1 and the train-val gap
    with its verdict, and draws accuracy.png, loss.png, overfitting_gap.png, convergence.png,
    params_vs_time.png and test_accuracy.png.
    """
    given = groups.given(ctx, values)
    runs = [parse_run(text) for text in run or []]
    sweeps = [parse_sweep(text) for text in sweep or []]
    file_values, file_bases = {}, []
    if study_file:
        file_values, file_bases, file_folds, file_runs, file_sweeps = _study_files(study_file)
        folds = folds or file_folds
        runs += file_runs
        sweeps += file_sweeps
    runs += sweep_grid(sweeps)
    if len(runs) < 1:
        raise ConfigError("nothing to compare: give --run 'NAME: OPTIONS' (repeatable), --sweep OPTION=V1,V2 or --config FILE")
    shared = _shared(given, file_values, file_bases, base)
    configs = {name: train_config(shlex.split(opts), shared) for name, opts in runs}
    if len(configs) < len(runs):  # as run_study says it of a list
        twice = next(name for index, (name, _) in enumerate(runs) if any(other == name for other, _ in runs[:index]))
        raise ConfigError(f"run name '{twice}' is given twice; give each run a name of its own")
    result = api.compare(configs, out=out, folds=folds, title=_title(given, " ".join([*file_bases, base]).strip()))
    for label in result.skipped:
        output.info(f"{label}: already finished, not trained again")
    if as_json:
        output.print_json(result.to_dict())
        return
    render_table(result.table, f"comparison, {folds}-fold means ± std" if folds else "comparison")
    output.out.print("\n".join(f"{name}: {path}" for name, path in {**result.files, **result.figures}.items()), markup=False)


def _number(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = format(value, fmt)
    std = row.get(f"{key}_std")
    return f"{text} ± {format(std, fmt.replace('+', ''))}" if std is not None else text


def render_table(table_rows: list[dict], title: str) -> None:
    table = Table("run", "arch", "trainable / total", "epochs", "train s", "s/epoch", "best val acc", "best val loss",
                  "test acc", "macro F1", "gap", "verdict", title=title)
    for row in table_rows:
        table.add_row(
            row["name"], row["arch"], f"{row['trainable']:,} / {row['total']:,}", _number(row, "epochs_run", ".0f"),
            _number(row, "seconds", ".1f"), _number(row, "seconds_per_epoch", ".2f"), _number(row, "best_val_acc", ".4f"),
            _number(row, "best_val_loss", ".4f"), _number(row, "test_acc", ".4f"), _number(row, "f1_macro", ".4f"),
            _number(row, "gap", "+.3f"), row["verdict"],
        )
    output.print_table(table)
