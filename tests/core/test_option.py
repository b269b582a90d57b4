"""``tlcli.core.option``: an option declared once on its field (``option``), read back in field
order (``declared``), and the checks every value goes through (``check_value`` and the named
checks); and that ``core.config``'s option tables are built from those declarations."""

from __future__ import annotations

import math
import re
from dataclasses import MISSING, dataclass, fields

import pytest

from tlcli.core import config
from tlcli.core.errors import ConfigError
from tlcli.core.option import (
    MAX_SEED, Option, check_device, check_freeze_policy, check_positive, check_seed, check_unfreeze, check_value, declared, option,
    same_option,
)


@dataclass(frozen=True)
class _Section:
    size: int = option(3, "How many.", panel="P", low=1, high=9, phase2=True)
    source: str = option("here", "Where from.", name="data", short="-d")
    internal: int = 0  # no option: not on the command line
    seed: int = same_option(7, "data")
    mode: str = option("a", "Which mode.", choices=("a", "b"))


@dataclass(frozen=True)
class _Required:
    source: str = option(MISSING, "The run.", flag="--from")


def test_option_keeps_the_default_and_the_declaration_on_the_field():
    size = next(f for f in fields(_Section) if f.name == "size")
    assert size.default == 3 and _Section().size == 3
    assert size.metadata["option"] == Option("How many.", panel="P", low=1, high=9, phase2=True)


def test_an_option_declared_missing_is_required():
    with pytest.raises(TypeError):
        _Required()
    assert _Required("run-1").source == "run-1"
    assert declared(_Required)[0][2].flag == "--from"


def test_declared_lists_the_options_in_field_order_under_their_option_names():
    found = declared(_Section)
    # "source" is the option "data"; "internal" and the same_option "seed" are no options.
    assert [name for name, _, _ in found] == ["size", "data", "mode"]
    assert [field_.name for _, field_, _ in found] == ["size", "source", "mode"]
    assert found[1][2].short == "-d" and found[2][2].choices == ("a", "b")


def test_same_option_records_which_section_sets_the_field():
    seed = next(f for f in fields(_Section) if f.name == "seed")
    assert seed.metadata == {"same_as": "data"} and seed.default == 7


def test_check_value_returns_what_it_accepts_and_lets_none_pass():
    declaration = Option("", low=1, high=9, choices=None)
    assert check_value("size", declaration, 1) == 1
    assert check_value("size", declaration, 9) == 9
    assert check_value("size", declaration, None) is None  # an automatic choice


@pytest.mark.parametrize("value, message", [(0, "size limit must be from 1 to 9, got 0"), (9.5, "size limit must be from 1 to 9, got 9.5")])
def test_check_value_refuses_values_out_of_range_naming_the_option(value, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        check_value("size_limit", Option("", low=1, high=9), value)


def test_check_value_with_only_a_lower_bound_says_at_least():
    with pytest.raises(ConfigError, match=r"^weight decay must be at least 0.0, got -0.1$"):
        check_value("weight_decay", Option("", low=0.0), -0.1)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_check_value_refuses_numbers_that_are_not_finite_even_without_bounds(value):
    with pytest.raises(ConfigError, match="learning rate must be a finite number"):
        check_value("learning_rate", Option(""), value)


def test_check_value_refuses_an_unknown_choice_listing_the_choices():
    declaration = Option("", choices=("adam", "sgd"))
    assert check_value("optimizer", declaration, "sgd") == "sgd"
    with pytest.raises(ConfigError, match=r"^unknown optimizer 'lbfgs'; choose one of adam, sgd$"):
        check_value("optimizer", declaration, "lbfgs")


def test_check_value_does_not_compare_strings_booleans_or_tuples_with_bounds():
    declaration = Option("", low=2, high=3)
    assert check_value("x", declaration, "text") == "text"
    assert check_value("x", declaration, True) is True
    assert check_value("x", declaration, (100, 200)) == (100, 200)


def test_check_value_returns_what_the_options_own_check_returns():
    seen = []
    declaration = Option("", low=0, check=lambda value: seen.append(value) or value * 2)
    assert check_value("x", declaration, 4) == 8 and seen == [4]
    with pytest.raises(ConfigError):  # the range is checked before the option's own check
        check_value("x", declaration, -1)
    assert seen == [4]


@pytest.mark.parametrize("policy", ["none", "all", "backbone", "last:2", "blocks:0", "re:^layer[34]\\.", "re:"])
def test_check_freeze_policy_accepts_every_documented_form(policy):
    assert check_freeze_policy(policy) == policy


@pytest.mark.parametrize("policy, message", [
    ("last:two", r"needs a whole number after 'last:', e\.g\. last:2"),
    ("blocks:", r"needs a whole number after 'blocks:'"),
    ("last:-1", r"needs a whole number"),
    ("re:[unclosed", r"bad regular expression"),
    ("head", r"unknown freeze policy 'head'; use one of none, backbone, all, last:N, blocks:N, re:PATTERN"),
])
def test_check_freeze_policy_refuses_malformed_policies_saying_why(policy, message):
    with pytest.raises(ConfigError, match=message):
        check_freeze_policy(policy)


def test_check_unfreeze_takes_all_or_a_freeze_policy():
    assert check_unfreeze("all") == "all"
    assert check_unfreeze("last:3") == "last:3"
    with pytest.raises(ConfigError, match="unknown freeze policy 'everything'"):
        check_unfreeze("everything")


@pytest.mark.parametrize("device", ["auto", "cpu", "mps", "cuda", "cuda:0", "cuda:12"])
def test_check_device_accepts_the_documented_devices(device):
    assert check_device(device) == device


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "CPU", "cpu:0", " cuda", "cuda:0,1"])
def test_check_device_refuses_anything_else(device):
    # The wording of the list may change; naming the value and the device forms may not.
    with pytest.raises(ConfigError, match=rf"unknown device '{re.escape(device)}'.*auto, cpu, cuda, cuda:N.*mps"):
        check_device(device)


def test_check_seed_takes_exactly_what_numpy_takes():
    assert check_seed(0) == 0 and check_seed(MAX_SEED) == MAX_SEED
    assert MAX_SEED == 2**32 - 1
    for bad in (-1, MAX_SEED + 1):
        with pytest.raises(ConfigError, match=rf"(?=.*{re.escape(str(bad))}).*whole number from 0 to {MAX_SEED}"):
            check_seed(bad)


@pytest.mark.parametrize("bad", [0, -1e-3, math.nan])
def test_check_positive_refuses_zero_negatives_and_nan(bad):
    assert check_positive(1e-9) == 1e-9
    with pytest.raises(ConfigError, match="is not > 0"):
        check_positive(bad)


def test_train_options_are_every_declared_option_of_every_section():
    expected = {name: (section, field_.name, declaration)
                for section, kind in config.SECTIONS.items() for name, field_, declaration in declared(kind)}
    assert config.TRAIN_OPTIONS == expected
    # No two sections declare one name: a collision would silently drop an option.
    assert len(config.TRAIN_OPTIONS) == sum(len(declared(kind)) for kind in config.SECTIONS.values())
    assert config.TRAIN_OPTIONS["data"][:2] == ("data", "source")  # the option's name, not the field's
    assert "folds" not in config.TRAIN_OPTIONS  # a field without a declaration is no option


def test_phase1_overrides_are_exactly_the_options_declared_phase2():
    declared_phase2 = {name for kind in config.SECTIONS.values() for name, _, declaration in declared(kind) if declaration.phase2}
    assert set(config.PHASE1_OVERRIDES) == declared_phase2
    assert "optimizer" in config.PHASE1_OVERRIDES and "arch" not in config.PHASE1_OVERRIDES
    assert all(config.PHASE1_OVERRIDES[name] == config.TRAIN_OPTIONS[name] for name in config.PHASE1_OVERRIDES)


def test_check_config_applies_the_declared_checks_to_a_configuration_built_elsewhere():
    config.check_config(config.TrainConfig())
    bad_choice = config.TrainConfig(optim=config.OptimConfig(optimizer="lbfgs"))
    bad_policy = config.TrainConfig(model=config.ModelConfig(freeze="last:x"))
    bad_range = config.TrainConfig(augment=config.AugmentConfig(rotate=200.0))
    for bad, message in ((bad_choice, "unknown optimizer 'lbfgs'"), (bad_policy, "freeze policy 'last:x'"), (bad_range, "rotate must be from")):
        with pytest.raises(ConfigError, match=message):
            config.check_config(bad)


def test_a_negative_backbone_rate_in_a_configuration_built_elsewhere_is_refused():
    from dataclasses import replace

    from tlcli.core.config import OptimConfig, TrainConfig, check_config

    with pytest.raises(ConfigError, match="backbone lr mult must be at least 0"):
        check_config(replace(TrainConfig(), optim=OptimConfig(backbone_lr_mult=-0.1)))
