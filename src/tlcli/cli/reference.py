"""docs/options.md: every option of every command, generated from the command tree itself, so the
reference cannot drift from the code (``make docs`` writes it; a test checks it is current)."""

from __future__ import annotations

import sys

import typer

HEADER = """# Options of every command

Generated from the code by `make docs` (`python -m tlcli.cli.reference > docs/options.md`); a test
fails when it is out of date. `tlcli COMMAND --help` shows the same, with examples.
"""


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(param) -> str:
    if "[default:" in (param.help or "") or param.default is None or param.param_type_name == "argument" and param.required:
        return ""
    if getattr(param, "is_flag", False):
        return "on" if param.default else "off"
    return f"`{param.default}`" if not isinstance(param.default, (list, tuple)) else ", ".join(map(str, param.default))


def _row(param) -> str:
    if param.param_type_name == "argument":
        names, takes = f"`{param.name.upper()}{'...' if param.nargs != 1 else ''}`", ""
    else:
        names = ", ".join(f"`{name}`" for name in (*param.opts, *param.secondary_opts))
        takes = "" if param.is_flag else param.bare_type() + (f" {range_}" if (range_ := param._get_number_range_help_str()) else "")
    return f"| {names} | {takes} | {_default(param)} | {_cell(param.help or '')} |"


def _commands(group, prefix: str = "tlcli"):
    for name, command in group.commands.items():
        if getattr(command, "hidden", False):
            continue
        if hasattr(command, "commands"):
            yield from _commands(command, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", command


def options_reference() -> str:
    from tlcli.cli import app

    parts = [HEADER]
    for name, command in _commands(typer.main.get_command(app)):
        summary = (command.help or "").strip().split("\n\n")[0]
        rows = [_row(param) for param in command.params if not getattr(param, "hidden", False)]
        parts.append(f"\n## {name}\n\n{_cell(summary)}\n\n| option | takes | default | what it does |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")
    return "".join(parts)


if __name__ == "__main__":
    sys.stdout.write(options_reference())
