"""--config FILE: options from TOML files, keys named as the options. Train's (and compare's
study files) hold train options; finetune's, its own. A file's values become the options'
defaults (the context's ``default_map``), so they pass the same checks and the command line wins."""

from __future__ import annotations

import difflib
import json
import tomllib
from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli.cli.groups import TRAIN_DEFAULTS, TRAIN_KINDS, option_values
from tlcli.core.errors import ConfigError, TlcliError
from tlcli.core.files import read_regular_file

def _use_config_files(ctx: typer.Context, paths: Optional[list[Path]]) -> Optional[list[Path]]:
    # Eager, so the files' values are in place as the other options' defaults before those are
    # read: the options given on the command line then win, and the files' values pass the same
    # checks. Files given twice apply in order, each over the one before.
    for path in paths or []:
        ctx.default_map = {**(ctx.default_map or {}), **read_options_file(path)[0]}
    return paths


ConfigFile = Annotated[Optional[list[Path]], typer.Option(
    "--config", is_eager=True, callback=_use_config_files,
    help="A TOML file of train options, KEY = VALUE as the options are named (arch = \"resnet18\", epochs = 20, hflip = true); "
         "repeat it to apply several files in order, each over the one before; options given on the command line win [default: none].")]
# A config file is a few lines of options; more than this is not one (a link to /dev/zero, a data file).
CONFIG_FILE_LIMIT = 1 << 20


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(read_regular_file(path, limit=CONFIG_FILE_LIMIT, what="config file").decode())
    except TlcliError as exc:
        raise ConfigError(str(exc)) from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


# Options a command's --config file cannot set: the file itself, and how this invocation runs.
_NOT_IN_FILES = ("config_file", "resume", "nproc", "as_json", "help")


def read_command_file(command, path: Path) -> dict:
    """A command's own option values from a TOML file, keys named as its options (from = "...",
    backbone-lr-mult = 0.5), each checked for its TOML type; click checks the values themselves."""
    keys = {}
    for param in command.params:
        if param.param_type_name == "option" and param.name not in _NOT_IN_FILES:
            for flag in (opt[2:] for opt in param.opts if opt.startswith("--")):
                keys[flag] = keys[flag.replace("-", "_")] = param
    values = {}
    for key, value in _read_toml(path).items():
        if key not in keys:
            close = difflib.get_close_matches(key, list(keys), n=1)
            valid = ", ".join(dict.fromkeys(k for k in keys if "_" not in k))
            raise ConfigError(f"{path}: unknown key '{key}'" + (f" (did you mean {close[0]}?)" if close else "") + f"; valid keys: {valid}")
        param = keys[key]
        kind = param.type_descriptor.annotation
        check_toml_type(path, key, value, kind if kind in (int, float, bool) else str)
        values[param.name] = value
    return values


def _use_command_files(ctx: typer.Context, paths: Optional[list[Path]]) -> Optional[list[Path]]:
    for path in paths or []:
        ctx.default_map = {**(ctx.default_map or {}), **read_command_file(ctx.command, path)}
    return paths


CommandConfigFile = Annotated[Optional[list[Path]], typer.Option(
    "--config", is_eager=True, callback=_use_command_files,
    help="A TOML file of this command's options, KEY = VALUE as the options are named (epochs = 10, backbone-lr-mult = 0.5); "
         "repeat it to apply several files in order; options given on the command line win [default: none].")]


def read_options_file(path: Path, *, extra: tuple[str, ...] = (), leave_out: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """The train option values a TOML file sets (keys named as the options, with - or _) and its
    ``extra`` keys. An unreadable file (not a regular file, over CONFIG_FILE_LIMIT), an unknown
    key or a bad value, of the wrong TOML type included, is a ConfigError naming it."""
    document = _read_toml(path)
    valid = [name for name in TRAIN_DEFAULTS if name not in leave_out]
    values, extras, keys = {}, {}, {}
    for key, value in document.items():
        name = key.lstrip("-").replace("-", "_")
        if key in extra:
            extras[key] = value
        elif name in valid:
            # Lists are what --hidden takes as comma-separated sizes.
            values[name], keys[name] = ",".join(map(str, value)) if isinstance(value, list) else value, key
            check_toml_type(path, key, values[name], TRAIN_KINDS[name])
        else:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" (did you mean {close[0].replace('_', '-')}?)" if close else ""
            keys_text = ", ".join(name.replace("_", "-") for name in (*extra, *valid))
            raise ConfigError(f"{path}: unknown key '{key}'{hint}; valid keys: {keys_text}")
    try:
        option_values([], values)
    except typer.BadParameter as exc:
        key = keys.get(exc.param.name, exc.param.name) if exc.param is not None else "a value"
        raise ConfigError(f"{path}: bad value for {key}: {exc.message}") from None
    return values, extras


# What each TOML type may give: click would turn true into 1 and "3" into 3, silently.
_TOML_TYPES = {bool: ((bool,), "true or false"), int: ((int,), "a whole number"), float: ((int, float), "a number"), str: ((str,), "a string")}


def check_toml_type(path: Path, key: str, value, kind: type) -> None:
    """A ConfigError unless ``value`` (from a TOML file) is of ``kind``: a bool is not a number there."""
    accepted, described = _TOML_TYPES[kind]
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, accepted):
        raise ConfigError(f"{path}: bad value for {key}: expected {described}, got {json.dumps(value, default=str)}")


