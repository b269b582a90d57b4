"""Every ``tlcli train`` option, declared once and composed into each command that trains
(train, sanity, lr-find, compare; compare also reads its --run/--base strings through the same
group), in the manner of sqlite-utils' option-group decorators. The command receives one
``TrainConfig``, built by keyword; values with fixed choices were checked by the options'
callbacks, before any data is read (exit 2). ``--config FILE`` gives the options new defaults
from a TOML file, so what the command line says still wins."""

from __future__ import annotations

import difflib
import functools
import inspect
import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Optional, get_args, get_origin

import typer

from tlcli.cli import options, output
from tlcli.api.options import PHASE1_OVERRIDES, TRAIN_DEFAULTS, train_config, warnings_about
from tlcli.config import DEFAULT_LR, HEAD_ONLY_LR, PHASE2_FALLBACKS, RunConfig, TrainConfig
from tlcli.cli.strict import make_strict
from tlcli.errors import ConfigError, TlcliError
from tlcli.files import read_regular_file

Lr = Annotated[Optional[float], typer.Option("--lr", callback=options.positive, help=f"Learning rate, x>0 [default: {HEAD_ONLY_LR:g} when only the head trains epoch by epoch, else {DEFAULT_LR:g}].", rich_help_panel="Optimisation")]
Epochs = Annotated[Optional[int], typer.Option("--epochs", "-e", min=1, help=f"Epochs to train [default: {RunConfig().epochs}; with --resume: the run's own].", rich_help_panel="Run")]

# (section of TrainConfig, field, annotation), in the order --help lists them; "seed" serves the data split and the run.
# The defaults are the API's (tlcli.api.options.TRAIN_DEFAULTS), shown as the command line takes them.
GROUP = (
    ("data", "source", options.Data),
    ("model", "arch", options.Arch),
    ("model", "num_classes", options.NumClasses),
    ("model", "weights", options.Weights),
    ("model", "dropout", options.Dropout),
    ("model", "hidden", options.Hidden),
    ("model", "freeze", options.Freeze),
    ("model", "bn_train", options.BnTrain),
    ("model", "input_size", options.InputSize),
    ("data", "val_split", options.ValSplit),
    ("data", "test_split", options.TestSplit),
    ("data", "seed", options.Seed),
    ("data", "max_bad", options.MaxBad),
    ("data", "download", options.Download),
    ("data", "class_names", options.ClassNames),
    ("data", "image_column", options.ImageColumn),
    ("data", "label_column", options.LabelColumn),
    ("data", "image_dir", options.ImageDir),
    ("augment", "hflip", options.HFlip),
    ("augment", "rotate", options.Rotate),
    ("augment", "zoom", options.Zoom),
    ("augment", "contrast", options.Contrast),
    ("augment", "color_jitter", options.ColorJitter),
    ("augment", "auto_augment", options.AutoAugment),
    ("optim", "optimizer", options.Optimizer),
    ("optim", "lr", Lr),
    ("optim", "weight_decay", options.WeightDecay),
    ("optim", "momentum", options.Momentum),
    ("optim", "nesterov", options.Nesterov),
    ("optim", "schedule", options.Schedule),
    ("optim", "warmup_epochs", options.WarmupEpochs),
    ("optim", "step_size", options.StepSize),
    ("optim", "gamma", options.Gamma),
    ("optim", "label_smoothing", options.LabelSmoothing),
    ("optim", "grad_clip", options.GradClip),
    ("optim", "accumulate", options.Accumulate),
    ("optim", "class_weights", options.ClassWeights),
    ("optim", "head_fit", options.HeadFit),
    ("run", "epochs", Epochs),
    ("run", "batch_size", options.TrainBatchSize),
    ("run", "device", options.Device),
    ("run", "amp", options.Amp),
    ("run", "channels_last", options.ChannelsLast),
    ("run", "compile", options.Compile),
    ("run", "sync_bn", options.SyncBn),
    ("run", "workers", options.Workers),
    ("run", "deterministic", options.Deterministic),
    ("run", "monitor", options.Monitor),
    ("run", "patience", options.Patience),
    ("run", "out", options.Out),
    ("run", "overwrite", options.Overwrite),
    ("run", "tensorboard", options.Tensorboard),
    ("run", "cache_features", options.CacheFeatures),
    ("run", "feature_views", options.FeatureViews),
    ("run", "cache_images", options.CacheImages),
    ("run", "cache_dir", options.CacheDir),
)
# The parameter names the command line uses: "data" for the source, the field name otherwise.
_NAMES = {(section, field): "data" if field == "source" else field for section, field, _ in GROUP}
# --hidden is written 128,64; --epochs has no default of its own, as --resume keeps the run's.
OPTION_DEFAULTS = {**{name: TRAIN_DEFAULTS[name] for name in _NAMES.values()},
                   "hidden": ",".join(map(str, TRAIN_DEFAULTS["hidden"])), "epochs": None}
assert len(OPTION_DEFAULTS) == len(TRAIN_DEFAULTS), "GROUP declares every train option once"


def _kind(annotation) -> type:
    """The value type of an option's annotation: int for Annotated[Optional[int], ...]."""
    kind = get_args(annotation)[0]
    return next(arg for arg in get_args(kind) if arg is not type(None)) if get_origin(kind) is not None else kind


_KINDS = {_NAMES[section, field]: _kind(annotation) for section, field, annotation in GROUP}


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
    valid = [name for name in OPTION_DEFAULTS if name not in leave_out]
    values, extras, keys = {}, {}, {}
    for key, value in document.items():
        name = key.lstrip("-").replace("-", "_")
        if key in extra:
            extras[key] = value
        elif name in valid:
            # Lists are what --hidden takes as comma-separated sizes.
            values[name], keys[name] = ",".join(map(str, value)) if isinstance(value, list) else value, key
            check_toml_type(path, key, values[name], _KINDS[name])
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


def config_from_options(values: dict) -> TrainConfig:
    """The TrainConfig that the group's parsed values describe (an --epochs not given: the default)."""
    return train_config(**{name: value for name, value in values.items() if not (name == "epochs" and value is None)})


def _own_parameters(command, *injected: str) -> list[inspect.Parameter]:
    """``command``'s parameters, keyword-only, without those the decorator passes itself."""
    return [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in inspect.signature(command, eval_str=True).parameters.values()
            if p.name not in injected]


def _present(wrapper, parameters: list[inspect.Parameter]):
    """Show Typer ``parameters`` as ``wrapper``'s signature, not the wrapped command's."""
    del wrapper.__wrapped__
    wrapper.__signature__ = inspect.Signature(parameters)
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper


def with_train_options(command=None, *, leave_out: tuple[str, ...] = ()):
    """Add every train option but those in ``leave_out`` (``config_file`` is --config) to
    ``command``. Depending on its parameters, it receives them as one ``config: TrainConfig``,
    the names of the options given (on the command line or in --config) as ``changed``, and
    their values as ``given``."""
    if command is None:
        return functools.partial(with_train_options, leave_out=leave_out)
    wants = inspect.signature(command).parameters
    own = _own_parameters(command, "config", "changed", "given")
    group = [inspect.Parameter(_NAMES[section, field], inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=OPTION_DEFAULTS[_NAMES[section, field]])
             for section, field, annotation in GROUP if _NAMES[section, field] not in leave_out]
    if "config_file" not in leave_out:
        group.insert(0, inspect.Parameter("config_file", inspect.Parameter.KEYWORD_ONLY, annotation=ConfigFile, default=None))
    context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)

    @functools.wraps(command)
    def wrapper(ctx: typer.Context, **values):
        values.pop("config_file", None)
        chosen = {name: values.pop(name) for name in OPTION_DEFAULTS if name not in leave_out}
        if "config" in wants:
            values["config"] = config_from_options({**OPTION_DEFAULTS, **chosen})
            for warning in warnings_about(values["config"]):
                output.warn(warning)
        given = {name: value for name, value in chosen.items() if ctx.get_parameter_source(name).name != "DEFAULT"}
        if "changed" in wants:
            values["changed"] = frozenset(given)
        if "given" in wants:
            values["given"] = given
        return command(**values)

    return _present(wrapper, [context, *group, *own])


def option_values(arguments: list[str], defaults: dict | None = None) -> dict:
    """Every train option's value, from arguments over ``defaults`` (option name -> value) over
    the options' own defaults; bad ones raise Typer's usage errors (exit 2)."""
    command = typer.main.get_command(_parser)
    make_strict(command)
    context = command.make_context("train options", list(arguments), default_map=defaults)
    return {name: context.params[name] for name in OPTION_DEFAULTS}


def parse_train_options(arguments: list[str], defaults: dict | None = None) -> TrainConfig:
    """A TrainConfig from train options written as arguments (compare's --run and --base)."""
    return config_from_options(option_values(arguments, defaults))


_parser = typer.Typer(add_completion=False)


@_parser.command()
@with_train_options
def _parse(config: TrainConfig) -> TrainConfig:
    return config


# What finetune may change from phase 1 (api.options.PHASE1_OVERRIDES): each option as the group
# declares it, defaulting to phase 1's value. Flags get a --no- form, so phase 2 can also turn off
# what phase 1 turned on.


def _override(annotation, place: tuple[str, str]):
    """The group's option, optional, defaulting to phase 1's value (or phase 2's own, where phase 1 set none)."""
    kind, info = _kind(annotation), annotation.__metadata__[0]
    # In Annotated, Typer keeps the first option name where a default would go.
    decls = [info.default, *info.param_decls] if isinstance(info.default, str) and info.default.startswith("-") else list(info.param_decls)
    if kind is bool:
        decls[0] = f"{decls[0]}/--no-{decls[0][2:]}"
    described = re.sub(r"\s*\[default[^]]*\]", "", info.help).rstrip(".")
    option = typer.Option(*decls, min=info.min, max=info.max, callback=info.callback, rich_help_panel=info.rich_help_panel,
                          help=f"{described} [default: phase 1's{f', or {PHASE2_FALLBACKS[place]:g} where it set none' if place in PHASE2_FALLBACKS else ''}].",
                          show_default=False)
    return Annotated[Optional[kind], option]


def with_phase1_overrides(command):
    """Add PHASE1_OVERRIDES to ``command``, which receives those given as ``overrides={name: value}``."""
    declared = {(section, field): annotation for section, field, annotation in GROUP}
    own = _own_parameters(command, "overrides")
    added = [inspect.Parameter(field, inspect.Parameter.KEYWORD_ONLY, annotation=_override(declared[section, field], (section, field)), default=None)
             for section, field in PHASE1_OVERRIDES]

    @functools.wraps(command)
    def wrapper(**values):
        overrides = {field: value for _, field in PHASE1_OVERRIDES if (value := values.pop(field)) is not None}
        return command(overrides=overrides, **values)

    return _present(wrapper, own + added)
