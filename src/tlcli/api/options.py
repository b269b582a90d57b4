"""The train options by name, as the command line and the Python API both take them: one option
per field of ``TrainConfig``'s sections, named as the field (``data`` for the source; ``seed``
sets the split's and the run's), with the dataclasses' defaults. Nothing else holds a default."""

from __future__ import annotations

import difflib
import numbers
import os
from dataclasses import MISSING, fields, replace
from typing import Any

from tlcli.config import MONITORS, FinetuneConfig, TrainConfig, check_config, check_freeze_policy
from tlcli.errors import ConfigError

SECTIONS = {field.name: type(field.default) for field in fields(TrainConfig)}  # data -> DataConfig, ...
# Not train options: set by train's --folds for each fold of a study, and by finetune.
_NOT_TRAIN_OPTIONS = {("data", "folds"), ("data", "fold"), ("optim", "backbone_lr_mult"), ("optim", "ema"), ("optim", "wise_ft")}


def _train_options() -> dict[str, tuple[tuple[str, str], ...]]:
    """option name -> the (section, field) pairs it sets."""
    options: dict[str, tuple[tuple[str, str], ...]] = {}
    for section, kind in SECTIONS.items():
        for field in fields(kind):
            if (section, field.name) not in _NOT_TRAIN_OPTIONS:
                name = "data" if field.name == "source" else field.name
                options[name] = (*options.get(name, ()), (section, field.name))
    return options


TRAIN_OPTIONS = _train_options()
_FIELDS = {(section, field.name): field for section, kind in SECTIONS.items() for field in fields(kind)}
TRAIN_DEFAULTS: dict[str, Any] = {name: _FIELDS[places[0]].default for name, places in TRAIN_OPTIONS.items()}
TRAIN_TYPES: dict[str, str] = {name: _FIELDS[places[0]].type for name, places in TRAIN_OPTIONS.items()}

# What finetune may change from phase 1, each defaulting to phase 1's value.
PHASE1_OVERRIDES = (
    ("optim", "optimizer"), ("optim", "schedule"), ("optim", "weight_decay"), ("optim", "warmup_epochs"), ("optim", "label_smoothing"),
    ("augment", "hflip"), ("augment", "rotate"), ("augment", "zoom"), ("augment", "contrast"), ("augment", "color_jitter"),
    ("augment", "auto_augment"), ("run", "batch_size"), ("run", "device"), ("run", "amp"), ("run", "patience"),
    ("run", "workers"), ("run", "cache_images"), ("run", "cache_dir"),
)
FINETUNE_DEFAULTS: dict[str, Any] = {field.name: field.default for field in fields(FinetuneConfig) if field.default is not MISSING
                                     and not field.name.endswith("_overrides")}
FINETUNE_TYPES: dict[str, str] = {field.name: field.type for field in fields(FinetuneConfig)}
# What finetune sets of phase 2's run besides PHASE1_OVERRIDES: where it goes.
PHASE2_RUN_OPTIONS = (("run", "out"), ("run", "overwrite"))

# Python types each annotation of the config dataclasses accepts (bool is not a number here).
_ACCEPTED = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "tuple[int, ...]": (tuple, list, str)}


def unknown_option(name: str, valid) -> ConfigError:
    close = difflib.get_close_matches(name, list(valid), n=1)
    return ConfigError(f"unknown option '{name}'" + (f" (did you mean {close[0]}?)" if close else "") + f"; valid: {', '.join(valid)}")


def _plain(value: Any, kinds: list[str]) -> Any:
    """A path as its string, a NumPy number as Python's, for the fields that take them."""
    if isinstance(value, os.PathLike) and "str" in kinds:
        return os.fspath(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and ("int" in kinds or "float" in kinds):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)) and "float" in kinds:
        return float(value)
    return value


def check_type(name: str, value: Any, annotation: str) -> Any:
    """``value`` as the field's ``annotation`` takes it (a path as a string), else a ConfigError."""
    kinds = annotation.split(" | ")
    value = _plain(value, kinds)
    if value is None and "None" in kinds:
        return value
    accepted = tuple(kind for name_ in kinds if name_ != "None" for kind in _ACCEPTED[name_])
    if isinstance(value, bool) != (bool in accepted) or not isinstance(value, accepted):
        raise ConfigError(f"{name} takes {' or '.join(kinds)}, got {value!r}")
    return value


def hidden_sizes(value) -> tuple[int, ...]:
    """--hidden as sizes: ``"128,64"``, or a sequence of whole numbers."""
    parts = value.split(",") if isinstance(value, str) else [value] if isinstance(value, numbers.Integral) else list(value)
    try:
        sizes = tuple(int(str(part).strip()) for part in parts if str(part).strip())
    except ValueError:
        raise ConfigError(f"hidden takes comma-separated whole numbers such as 128,64; got {value!r}") from None
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"hidden needs layer sizes of at least 1, such as 128,64; got {value!r}")
    return sizes


def train_config(base: TrainConfig | None = None, **options: Any) -> TrainConfig:
    """The TrainConfig that these train options describe, over ``base`` (default: every default),
    checked as the command line checks it: unknown names, wrong types, choices and ranges raise
    ConfigError."""
    sections = {section: {} for section in SECTIONS}
    for name, value in options.items():
        if name not in TRAIN_OPTIONS:
            raise unknown_option(name, TRAIN_OPTIONS)
        if name == "hidden":
            value = hidden_sizes(value)
        value = check_type(name, value, TRAIN_TYPES[name])
        if name == "data" and not value.strip():
            raise ConfigError("data names no data set: give a folder, a built-in set such as digits, a CSV file or hf:NAME")
        for section, field in TRAIN_OPTIONS[name]:
            sections[section][field] = value
    base = base or TrainConfig()
    config = TrainConfig(**{section: replace(getattr(base, section), **changes) for section, changes in sections.items()})
    if config.model.freeze is not None:
        check_freeze_policy(config.model.freeze)
    check_config(config)
    return config


def finetune_config(source: str, **options: Any) -> FinetuneConfig:
    """A FinetuneConfig from finetune's options by name: its own (unfreeze, epochs, lr, ...) and
    the phase-1 settings it may change (PHASE1_OVERRIDES: optimizer, hflip, out, ...)."""
    own = {name: options.pop(name) for name in list(options) if name in FINETUNE_DEFAULTS}
    overrides: dict[str, dict] = {"optim": {}, "augment": {}, "run": {}}
    changeable = {field: section for section, field in (*PHASE1_OVERRIDES, *PHASE2_RUN_OPTIONS)}
    for name, value in options.items():
        if name not in changeable:
            raise unknown_option(name, [*FINETUNE_DEFAULTS, *changeable])
        if value is not None:  # None: phase 1's value, as the signature says
            overrides[changeable[name]][name] = check_type(name, value, TRAIN_TYPES[name])
    own = {name: check_type(name, value, FINETUNE_TYPES[name]) for name, value in own.items()}
    if own.get("unfreeze", "all") != "all":
        check_freeze_policy(own["unfreeze"])
    if own.get("epochs", 1) < 1 or (own.get("backbone_lr_mult") or 0.0) < 0 or not own.get("lr", 1.0) > 0:
        raise ConfigError(f"finetune takes epochs >= 1, lr > 0 and backbone_lr_mult >= 0, got {own}")
    if own.get("monitor", "val_acc") not in MONITORS:
        raise ConfigError(f"unknown monitor '{own['monitor']}'; choose one of {', '.join(MONITORS)}")
    return FinetuneConfig(source=str(source), **own, optim_overrides=tuple(overrides["optim"].items()),
                          run_overrides=tuple(overrides["run"].items()), augment_overrides=tuple(overrides["augment"].items()))


def only_epochs(given: dict[str, Any], *, spell=lambda name: name) -> int | None:
    """The epochs a resumed run is given; a ConfigError naming (as ``spell`` writes them) the other
    options given, which it would ignore."""
    refused = sorted(spell(name) for name in given if name != "epochs")
    if refused:
        raise ConfigError(f"{spell('resume')} continues the run as its checkpoint configures it; only {spell('epochs')} may change, "
                          f"not {', '.join(refused)}")
    return given.get("epochs")


def warnings_about(config: TrainConfig) -> list[str]:
    """Settings that run but are unlikely to be what was meant."""
    freeze = config.model.freeze
    if config.model.weights == "none" and freeze not in (None, "none"):
        return [f"--weights none --freeze {freeze} trains on random features: the frozen layers keep their random "
                "initial weights (use pretrained weights, or --freeze none to train from scratch)"]
    return []
