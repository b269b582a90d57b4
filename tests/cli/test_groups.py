"""``cli.groups``: the configuration's declared options as Typer options, composed into commands
without a wrapper, and train's own parser reading option strings (compare's --run)."""

from __future__ import annotations

import inspect

import pytest
import typer

from tlcli.cli import groups
from tlcli.core.config import PHASE1_OVERRIDES, TRAIN_OPTIONS
from tlcli.core.errors import ConfigError


def _command(*group, **options):
    """A command made of ``group``, as click parses it, and what it was called with."""
    seen = {}

    @groups.with_options(*group, **options)
    def command(ctx: typer.Context, **values):
        seen.update(values=values, given=groups.given(ctx, values))

    app = typer.Typer()
    app.command()(command)
    return typer.main.get_command(app), command, seen


def _run(parser, arguments: list[str]) -> None:
    with parser.make_context("command", arguments) as context:
        parser.invoke(context)


def test_every_train_option_is_one_typer_option_in_the_declared_order():
    assert [p.name for p in groups.TRAIN] == list(TRAIN_OPTIONS)
    assert {p.name for p in groups.DATA} == {name for name, place in TRAIN_OPTIONS.items() if place[0] == "data"}
    assert {p.name for p in groups.MODEL} == {name for name, place in TRAIN_OPTIONS.items() if place[0] == "model"}
    overrides = [p for p in groups.FINETUNE if p.name in PHASE1_OVERRIDES]
    assert {p.name for p in overrides} == set(PHASE1_OVERRIDES) and all(p.default is None for p in overrides)


def test_the_command_itself_is_called_with_the_groups_options_and_knows_which_were_given():
    parser, command, seen = _command(groups.pick(groups.TRAIN, "epochs", "lr", "hflip"))
    assert list(inspect.signature(command).parameters) == ["ctx", "hflip", "lr", "epochs"]  # the group's order
    _run(parser, ["--epochs", "3"])
    assert seen["values"] == {"epochs": 3, "lr": None, "hflip": False} and seen["given"] == {"epochs": 3}


@pytest.mark.parametrize("arguments, message", [
    (["--epochs", "0"], "greater than or equal to 1"),
    (["--optimizer", "lbfgs"], "'lbfgs' is not one of adam, adamw, sgd, rmsprop"),
    (["--freeze", "last:x"], "needs a whole number after 'last:'"),
    (["--device", "gpu"], "unknown device 'gpu'"),
    (["--lr", "0"], "0 is not > 0"),
    (["--seed", "-1"], "-1 is not a seed"),
])
def test_a_declared_choice_range_or_form_is_a_usage_error(arguments, message):
    parser, _, seen = _command(groups.TRAIN)
    with pytest.raises(typer.BadParameter) as refused:
        _run(parser, arguments)
    assert message in refused.value.format_message() and not seen


def test_defaults_given_by_an_api_verb_replace_the_groups():
    parser, _, seen = _command(groups.pick(groups.TRAIN, "workers"), defaults={"workers": 3})
    _run(parser, [])
    assert seen["values"] == {"workers": 3} and seen["given"] == {}


def test_finetunes_overrides_keep_phase_1s_value_unless_given_and_flags_can_be_turned_off():
    parser, _, seen = _command(groups.FINETUNE)
    _run(parser, ["--from", "run", "--no-hflip", "--rotate", "5"])
    assert seen["values"]["hflip"] is False and seen["values"]["rotate"] == 5.0 and seen["values"]["optimizer"] is None
    assert seen["given"] == {"source": "run", "hflip": False, "rotate": 5.0}
    rotate = next(p for p in groups.FINETUNE if p.name == "rotate")
    assert rotate.annotation.__metadata__[0].help.endswith("[default: phase 1's, or 10 where it set none].")


def test_option_strings_are_read_by_trains_own_parser_over_defaults():
    values = groups.option_values(["--arch", "mlp", "--epochs", "4"], {"epochs": 2, "lr": 0.5})
    assert values["arch"] == "mlp" and values["epochs"] == 4 and values["lr"] == 0.5 and values["data"] == "digits"
    with pytest.raises(ConfigError, match="--folds cannot be given here"):
        groups.option_values(["--folds", "3"])
    with pytest.raises(typer.BadParameter):
        groups.option_values(["--optimizer", "lbfgs"])
