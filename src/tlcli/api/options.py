"""The options by name, as the command line and the Python API both take them, read from their
declarations in ``tlcli.core.config`` (``TRAIN_OPTIONS``, ``PHASE1_OVERRIDES`` and finetune's
own): a value of the wrong type, outside its choices or range is a ConfigError before any data
is read. Nothing here holds a default of its own."""

from __future__ import annotations

import difflib
import numbers
import os
from dataclasses import replace
from typing import Any

from tlcli.core.config import PHASE1_OVERRIDES, SECTIONS, TRAIN_FIELDS, TRAIN_OPTIONS, FinetuneConfig, TrainConfig, check_config
from tlcli.core.errors import ConfigError
from tlcli.core.option import check_value, declared

TRAIN_DEFAULTS: dict[str, Any] = {name: field.default for name, field in TRAIN_FIELDS.items()}
TRAIN_TYPES: dict[str, str] = {name: field.type for name, field in TRAIN_FIELDS.items()}
# finetune's own options (its source is the verb's positional ``run``), then the phase-1 settings it may change.
FINETUNE_OPTIONS = {name: (field, declaration) for name, field, declaration in declared(FinetuneConfig) if name != "source"}
FINETUNE_DEFAULTS: dict[str, Any] = {name: field.default for name, (field, _) in FINETUNE_OPTIONS.items()}
FINETUNE_TYPES: dict[str, str] = {name: field.type for name, (field, _) in FINETUNE_OPTIONS.items()}

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
        section, field, _ = TRAIN_OPTIONS[name]
        sections[section][field] = value
        if name == "seed":  # the split's and the run's
            sections["run"]["seed"] = value
    base = base or TrainConfig()
    config = TrainConfig(**{section: replace(getattr(base, section), **changes) for section, changes in sections.items()})
    check_config(config)
    return config


def finetune_config(source: str, **options: Any) -> FinetuneConfig:
    """A FinetuneConfig from finetune's options by name: its own (unfreeze, epochs, lr, ...) and
    the phase-1 settings it may change (PHASE1_OVERRIDES: optimizer, hflip, ...)."""
    own, overrides = {}, []
    for name, value in options.items():
        if name in FINETUNE_OPTIONS:
            own[name] = check_value(name, FINETUNE_OPTIONS[name][1], check_type(name, value, FINETUNE_TYPES[name]))
        elif name in PHASE1_OVERRIDES:
            if value is not None:  # None: phase 1's value, as the signature says
                section, field, declaration = PHASE1_OVERRIDES[name]
                overrides.append((section, field, check_value(name, declaration, check_type(name, value, TRAIN_TYPES[name]))))
        else:
            raise unknown_option(name, [*FINETUNE_OPTIONS, *PHASE1_OVERRIDES])
    return FinetuneConfig(source=str(source), **own, overrides=tuple(overrides))


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
