"""How an option is declared: once, as metadata on its configuration field (``option``). The
command line's flags and help, the TOML keys of --config files, finetune's overrides of phase 1,
the Python API's keyword arguments, the checks of a configuration built elsewhere and the options
reference are all read from these declarations (``declared``)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields, replace
from typing import Any

from tlcli.core.errors import ConfigError

# numpy takes seeds up to 2**32 - 1, and torch's generators take seed * 1000 + epoch below 2**64.
MAX_SEED = 2**32 - 1
DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"
POLICY_FORMS = ("none", "backbone", "all", "last:N", "blocks:N", "re:PATTERN")


@dataclass(frozen=True)
class Option:
    """An option of the command line and the API: its help (``[default: ...]`` in it where the
    field's default says nothing, such as None), its --help panel, and what values it takes."""

    help: str
    panel: str | None = None
    name: str | None = None  # the option's name where it is not the field's (data for DataConfig.source)
    flag: str | None = None  # the command line's, where it is not --name (--from for finetune's source)
    short: str | None = None  # -a
    choices: tuple[str, ...] | None = None
    low: float | None = None  # at least
    high: float | None = None  # at most
    check: Callable[[Any], Any] | None = None  # returns the value, or raises ConfigError
    phase2: bool = False  # finetune may change it from phase 1's value
    negatable: bool = False  # --name/--no-name
    hidden_default: bool = False  # the help says the default itself


def option(default: Any, help: str, **declaration: Any) -> Field:
    """A configuration field that is an option: ``default`` (MISSING: a required one), then how the option reads."""
    return field(default=default, metadata={"option": Option(help, **declaration)})


def option_like(kind, name: str, default: Any, **changes: Any) -> Field:
    """The option ``kind`` declares as ``name``, as a field of another configuration with its own default."""
    return field(default=default, metadata={"option": replace(kind.__dataclass_fields__[name].metadata["option"], **changes)})


def same_option(default: Any, as_: str) -> Field:
    """A field set by another section's option of the same name (the seed of the split and of the run)."""
    return field(default=default, metadata={"same_as": as_})


def declared(kind) -> list[tuple[str, Field, Option]]:
    """The options of a configuration dataclass, in the order of its fields: (name, field, option)."""
    return [(field_.metadata["option"].name or field_.name, field_, field_.metadata["option"])
            for field_ in fields(kind) if "option" in field_.metadata]


def check_value(name: str, declaration: Option, value: Any) -> Any:
    """``value`` when the option takes it (choices, range, its own check, a finite number), else a
    ConfigError naming the option. None, an automatic choice, passes."""
    if value is None:
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name.replace('_', ' ')} must be a finite number, got {value}")
    if declaration.choices is not None and value not in declaration.choices:
        raise ConfigError(f"unknown {name.replace('_', ' ')} '{value}'; choose one of {', '.join(declaration.choices)}")
    low, high = declaration.low, declaration.high
    if not isinstance(value, (str, bool, tuple)) and ((low is not None and value < low) or (high is not None and value > high)):
        bounds = f"from {low} to {high}" if low is not None and high is not None else f"at least {low}" if low is not None else f"at most {high}"
        raise ConfigError(f"{name.replace('_', ' ')} must be {bounds}, got {value}")
    return declaration.check(value) if declaration.check is not None else value


def check_freeze_policy(policy: str) -> str:
    """``policy`` when it is a well-formed freeze policy (whatever the network), else a ConfigError."""
    if policy in ("none", "all", "backbone"):
        return policy
    if policy.startswith(("last:", "blocks:")):
        if not policy.partition(":")[2].isdigit():
            raise ConfigError(f"freeze policy '{policy}' needs a whole number after '{policy.partition(':')[0]}:', e.g. {policy.partition(':')[0]}:2")
        return policy
    if policy.startswith("re:"):
        try:
            re.compile(policy[3:])
        except re.error as exc:
            raise ConfigError(f"freeze policy '{policy}': bad regular expression ({exc})") from None
        return policy
    raise ConfigError(f"unknown freeze policy '{policy}'; use one of {', '.join(POLICY_FORMS)}")


def check_unfreeze(value: str) -> str:
    """finetune's --unfreeze: all, or a freeze policy for what stays frozen."""
    return value if value == "all" else check_freeze_policy(value)


def check_device(value: str) -> str:
    if not re.fullmatch(DEVICE_PATTERN, value):
        raise ConfigError(f"unknown device '{value}'; choose one of auto, cpu, cuda, cuda:N, mps")
    return value


def check_seed(value: int) -> int:
    if not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{value} is not a seed: give a whole number from 0 to {MAX_SEED}")
    return value


def check_positive(value: float) -> float:
    if not value > 0:
        raise ConfigError(f"{value:g} is not > 0")
    return value
