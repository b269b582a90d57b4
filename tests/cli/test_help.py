"""Every command's --help, as printed into a pipe: each default shown, brackets kept, examples given."""

from __future__ import annotations

import re

import pytest

from tlcli.cli import app
from tlcli.cli.help import command_tree

pytestmark = pytest.mark.usefixtures("isolated")


def _walk(command, path=()):
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _walk(sub, (*path, name))


COMMANDS = list(_walk(command_tree(app)))


def _rows(text: str) -> dict[str, str]:
    """Each option's or argument's row of the help panels, wrapped lines joined, by its first name."""
    rows: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        body = line.strip().strip("│").rstrip()
        if not line.startswith("│") or not body.strip():
            name = None
            continue
        first = body.lstrip(" *")
        if len(body) - len(first) <= 6:  # a new row starts near the border; wrapped lines are indented far
            name = first.split()[0].removesuffix("...")
            rows[name] = first
        elif name is not None:
            rows[name] += " " + first.strip()
    return rows


def _must_show_a_default(param) -> bool:
    # A flag without a --no- form is off unless given; a required value has no default.
    single_flag = getattr(param, "is_flag", False) and not param.secondary_opts and not param.default
    return not (param.hidden or param.required or single_flag)


@pytest.fixture
def help_of(run_cli, monkeypatch):
    # Wide enough that no paragraph or option row wraps: a line break left in the text shows.
    monkeypatch.setenv("COLUMNS", "1000")
    monkeypatch.delenv("FORCE_COLOR", raising=False)

    def render(path):
        result = run_cli(*path, "--help")
        assert result.code == 0, result.stderr
        return result.stdout

    return render


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(path) or "tlcli" for path, _ in COMMANDS])
def test_help_shows_every_default_an_example_and_no_eaten_brackets(help_of, path, command):
    text = help_of(path)
    assert "<bool>" not in text
    assert "[]" not in text and not re.search(r"\w \.(\s|$)", text, re.M), "text in square brackets was eaten"
    rows = _rows(text)
    for param in command.params:
        if not _must_show_a_default(param):
            continue
        name = next((opt for opt in param.opts if opt.startswith("--")), param.name.upper())  # arguments in capitals
        assert name in rows, f"{name} missing from the help"
        assert rows[name].count("[default:") == 1, f"{name} shows no default, or two: {rows[name]}"
    examples = text.partition("Examples:")[2].partition("Exit codes")[0]
    assert len(re.findall(r"^\s+tlcli ", examples, re.M)) >= 2
    assert "Exit codes: 0" in text


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(path) or "tlcli" for path, _ in COMMANDS])
def test_help_paragraphs_are_not_broken_mid_sentence(help_of, path, command):
    text = help_of(path)
    description = text.partition("╭")[0].splitlines()[2:]  # after the usage line
    commands = text.partition("─ Commands ")[2].partition("╰")[0].splitlines()[1:]  # the groups' list of commands
    for line in [*description, *commands]:
        if line.strip(" │"):
            assert line.strip(" │").endswith((".", ":")), line


def test_the_defaults_the_issue_named_show(help_of):
    rows = _rows(help_of(["train"]))
    assert "[default: imagenet where the architecture has weights]" in rows["--weights"]
    assert "[default: backbone with pretrained weights, else none]" in rows["--freeze"]
    assert "with --resume: the run's own" in rows["--epochs"] and "[default: 10]" in rows["--epochs"]
    assert "tlcli[tensorboard]" in rows["--tensorboard"]
    assert "[default: the latest run's best.pt]" in _rows(help_of(["evaluate"]))["CHECKPOINT"]
    compare = _rows(help_of(["compare"]))
    assert "[runs]" in compare["--config"] and "[sweep]" in compare["--config"]
    assert "143 SIGTERM" in help_of([]) and "143 SIGTERM" in help_of(["train"])


def test_lr_help_matches_its_check(help_of, run_cli):
    for command in ("train", "finetune"):
        assert "x>0" in _rows(help_of([command]))["--lr"] and "x>=0" not in _rows(help_of([command]))["--lr"]
    # Nothing named here exists: exit 2 shows the value was refused before anything was read.
    for refused in (run_cli("train", "--data", "nowhere", "--lr", "0"), run_cli("finetune", "--from", "nowhere", "--lr", "0")):
        assert refused.code == 2 and "'--lr': 0 is not > 0" in refused.stderr, refused.stderr


def test_the_options_reference_in_docs_is_generated_from_the_current_code():
    from pathlib import Path

    from tlcli.cli.reference import options_reference

    written = (Path(__file__).resolve().parents[2] / "docs" / "options.md").read_text()
    assert written == options_reference(), "docs/options.md is out of date: run make docs"
