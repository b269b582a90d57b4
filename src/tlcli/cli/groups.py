"""The options of the configuration dataclasses (``tlcli.core.config``, each field declared once
with ``option``) as Typer options, composed into the commands in groups, in the manner of
sqlite-utils' option-group decorators: train's every option (``TRAIN``: train, sanity, lr-find,
compare), the data options (``DATA``: data check, data export), the model options (``MODEL``:
summary), and finetune's own with the phase-1 settings it may change (``FINETUNE``).

``with_options`` gives a command the group's parameters by setting its signature: Typer calls
the command itself, which takes them as ``**options`` (no wrapper between the CLI and the run).
Values with fixed choices, ranges or forms are checked by the options' callbacks before any data
is read (exit 2)."""

from __future__ import annotations

import inspect
import re
from dataclasses import MISSING, Field
from typing import Annotated, Any, Optional

import typer

from tlcli.api.options import TRAIN_DEFAULTS, TRAIN_TYPES, train_config, warnings_about
from tlcli.cli import output
from tlcli.core.config import PHASE1_OVERRIDES, PHASE2_FALLBACKS, TRAIN_FIELDS, TRAIN_OPTIONS, FinetuneConfig, TrainConfig
from tlcli.core.errors import ConfigError, ModelError
from tlcli.core.option import Option, check_value, declared

_KINDS = {"str": str, "int": int, "float": float, "bool": bool, "tuple[int, ...]": str}  # --hidden is written 128,64


def _check_arch(value: str) -> str:
    from tlcli.models.registry import check_arch  # the registry imports torch: only when an --arch is given

    try:
        check_arch(value)
    except ModelError as exc:
        raise ConfigError(str(exc)) from None
    return value


# Checks that need a layer above the configuration's (the model registry).
_CLI_CHECKS = {"arch": _check_arch}


def _callback(name: str, declaration: Option):
    """The option's checks as a click callback: a bad value is a usage error (exit 2)."""
    check = _CLI_CHECKS.get(name)

    def callback(value):
        if value is None or isinstance(value, bool):
            return value
        if declaration.choices is not None and value not in declaration.choices:
            raise typer.BadParameter(f"'{value}' is not one of {', '.join(declaration.choices)}")
        try:
            checked = check_value(name, declaration, value)
            return check(checked) if check is not None else checked
        except ConfigError as exc:
            raise typer.BadParameter(str(exc)) from None

    return callback


def parameter(name: str, field: Field, declaration: Option, *, default: Any = MISSING, override: bool = False) -> inspect.Parameter:
    """The Typer option of a declared field. ``override``: finetune's change of a phase-1 setting,
    optional (None keeps phase 1's), a flag with its --no- form."""
    annotation = field.type.replace(" | None", "")
    kind, nullable = _KINDS[annotation], field.type.endswith("| None") or override
    flag = declaration.flag or f"--{name.replace('_', '-')}"
    negatable = declaration.negatable or (override and kind is bool)
    decls = [f"{flag}/--no-{flag[2:]}" if negatable else flag, *([declaration.short] if declaration.short else [])]
    default = field.default if default is MISSING else default
    default = inspect.Parameter.empty if default is MISSING else default  # a required option
    help = declaration.help
    if override:
        fallback = PHASE2_FALLBACKS.get(PHASE1_OVERRIDES[name][:2])
        described = re.sub(r"\s*\[default[^]]*\]", "", help).rstrip(".")
        help = f"{described} [default: phase 1's{f', or {fallback:g} where it set none' if fallback is not None else ''}]."
    info = typer.Option(*decls, min=declaration.low, max=declaration.high, callback=_callback(name, declaration), help=help,
                        rich_help_panel=declaration.panel,
                        show_default=not (override or declaration.hidden_default or "[default:" in help))
    if isinstance(default, tuple):
        default = ",".join(map(str, default))
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[Optional[kind] if nullable else kind, info],
                             default=default)


TRAIN = [parameter(name, TRAIN_FIELDS[name], declaration) for name, (_, _, declaration) in TRAIN_OPTIONS.items()]
# The Python type each train option takes on the command line (and in a TOML file).
TRAIN_KINDS = {name: _KINDS[TRAIN_TYPES[name].replace(" | None", "")] for name in TRAIN_OPTIONS}
DATA = [p for p in TRAIN if TRAIN_OPTIONS[p.name][0] == "data"]
MODEL = [p for p in TRAIN if TRAIN_OPTIONS[p.name][0] == "model"]
FINETUNE = [parameter(name, field, declaration) for name, field, declaration in declared(FinetuneConfig)] + [
    parameter(name, TRAIN_FIELDS[name], declaration, default=None, override=True) for name, (_, _, declaration) in PHASE1_OVERRIDES.items()]


def pick(group: list[inspect.Parameter], *names: str) -> list[inspect.Parameter]:
    return [p for p in group if p.name in names]


def with_options(*groups: list[inspect.Parameter], leave_out: tuple[str, ...] = (), defaults: dict[str, Any] | None = None):
    """Give the command (whose signature ends with ``**values``) the parameters of ``groups`` but
    those in ``leave_out``, before its own; ``defaults`` replace the group's (an API verb's own)."""

    def compose(command):
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in inspect.signature(command, eval_str=True).parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        added = [p.replace(default=(defaults or {}).get(p.name, p.default)) for group in groups for p in group if p.name not in leave_out]
        # Arguments and --config first, then the group's options, then the command's own, as --help lists them.
        first = [p for p in own if p.name == "config_file" or p.annotation is typer.Context or
                 any(isinstance(info, typer.models.ArgumentInfo) for info in getattr(p.annotation, "__metadata__", ()))]
        parameters = [*first, *added, *(p for p in own if p not in first)]
        command.__signature__ = inspect.Signature(parameters)
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        return command

    return compose


def given(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    """The options among ``values`` that the command line or a --config file gave."""
    return {name: value for name, value in values.items() if ctx.get_parameter_source(name).name != "DEFAULT"}


def config_from(values: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of parsed train options (all of them, or some over the defaults), its
    warnings shown."""
    config = train_config(**values)
    for warning in warnings_about(config):
        output.warn(warning)
    return config


def option_values(arguments: list[str], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every train option's value from ``arguments``, written as ``tlcli train`` takes them, over
    ``defaults`` (option name -> value) over the options' own: parsed by train's own parser, so a
    bad value is its usage error (exit 2). Train's options that set no TrainConfig field (--folds,
    --nproc, ...) are refused."""
    from tlcli.cli import app
    from tlcli.cli.help import command_tree

    context = command_tree(app).commands["train"].make_context("train", list(arguments), default_map=defaults)
    other = [f"--{name.replace('_', '-')}" for name in context.params
             if name not in TRAIN_DEFAULTS and name != "config_file" and context.get_parameter_source(name).name != "DEFAULT"]
    if other:
        raise ConfigError(f"{', '.join(other)} cannot be given here: only train options (tlcli train --help) can")
    return {name: context.params[name] for name in TRAIN_DEFAULTS}


assert {p.name for p in TRAIN} == set(TRAIN_DEFAULTS), "every train option is a Typer option once"
