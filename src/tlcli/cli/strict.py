"""Two rules click leaves to each command, applied once to every command of the tree (and to the
parser of compare's --run strings): an option that takes one value is given once, where click
silently keeps the last (``--epochs 3 --epochs 5``), and a number option takes finite numbers,
where click's float accepts ``inf`` and ``nan``. Both are usage errors (exit 2) found while the
command line is parsed, before any data is read; a repeat, before any option's callback runs."""

from __future__ import annotations

import math
from collections import Counter

import typer

from tlcli.core.errors import ConfigError


def make_strict(command) -> None:
    """Apply both rules to ``command`` and every command below it."""
    command.make_parser = _refusing_repeats(command.make_parser)
    for param in command.params:
        if getattr(param, "type_descriptor", None) is not None and param.type_descriptor.annotation is float:
            param.process_value = _finite_first(param, param.process_value)
    for sub in getattr(command, "commands", {}).values():
        make_strict(sub)


def _option_name(param) -> str:
    """How help shows the option: its long names, a flag's --no- form too."""
    long = [name for name in param.opts if name.startswith("--")] or param.opts
    return "/".join([long[0], *param.secondary_opts])


def _refusing_repeats(make_parser):
    # The parser lists each option in the order given, once per occurrence (``order``); click
    # keeps only the last value, so the count there is the one place a repeat still shows.
    def make(ctx):
        parser = make_parser(ctx)
        parse = parser.parse_args

        def parse_once(args):
            opts, rest, order = parse(args)
            repeated = [(param, times) for param, times in Counter(order).items() if times > 1 and _takes_one_value(param)]
            if repeated:
                param, times = repeated[0]
                count = "twice" if times == 2 else f"{times} times"
                raise ConfigError(f"{_option_name(param)} is given {count}; it takes one value, so give it once")
            return opts, rest, order

        parser.parse_args = parse_once
        return parser

    return make


def _takes_one_value(param) -> bool:
    # Options declared to repeat (--run, --sweep, --config) and counters may; the help
    # option ends the command at once either way.
    return param.param_type_name == "option" and not param.multiple and not getattr(param, "count", False) and param.name != "help"


def _finite_first(param, process_value):
    # Before the range check, which would call nan "not <= 0.99", and before the callbacks.
    def process(ctx, value):
        try:
            number = float(value)  # a string from the command line, a number from a config file
        except (TypeError, ValueError):  # None (no default) or not a number: the type's own error
            number = 0.0
        if not math.isfinite(number):
            raise typer.BadParameter(f"{value} is not a finite number", ctx=ctx, param=param)
        return process_value(ctx, value)

    return process
