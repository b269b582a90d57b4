"""What ``--help`` shows besides the options: each command's examples, and the help text made
fit for Typer's rich renderer, which reads square brackets as markup (and drops them), keeps
the line breaks of docstrings after their first paragraph, and labels every flag ``<bool>``."""

from __future__ import annotations

import inspect

import typer
from rich.markup import escape

from tlcli.cli.strict import make_strict

HELP_OPTION_NAMES = ["-h", "--help"]

# The README's recipes, by command path ("" is tlcli itself); lines fit 80 columns.
_TWO_PHASES = (
    "# phase 1: ImageNet weights, backbone frozen; phase 2: all of it trains",
    "tlcli train --data pokemon --arch efficientnet_b0 --out checkpoints/pokemon",
    "tlcli finetune --from checkpoints/pokemon --epochs 5 --hflip --rotate 20",
)
EXAMPLES: dict[str, tuple[str, ...]] = {
    "": (*_TWO_PHASES, "tlcli evaluate            # the latest run on its test split"),
    "train": (
        *_TWO_PHASES,
        "tlcli train --data digits --arch simple_cnn --weights none --epochs 8",
        "tlcli train --config run.toml --epochs 20    # the file's options but one",
    ),
    "finetune": (*_TWO_PHASES, "tlcli finetune --from checkpoints/pokemon --unfreeze blocks:4 --lr 3e-4"),
    "evaluate": (
        "tlcli evaluate            # the latest run's best.pt on its test split",
        "tlcli evaluate checkpoints/pokemon --split val",
        "tlcli evaluate checkpoints/pokemon --data data/pokemon-extra --json",
    ),
    "export": (
        "tlcli export checkpoints/pokemon    # best.onnx beside best.pt",
        "tlcli export checkpoints/pokemon --format torchscript --out pokemon.pt",
        "tlcli export --embed-preprocessing --data pokemon",
    ),
    "serve": (
        "tlcli serve               # the latest run on http://127.0.0.1:8000/",
        "tlcli serve checkpoints/pokemon --host 0.0.0.0    # phones on the network too",
        "tlcli serve best.onnx --port 8080 --topk 3",
    ),
    "compare": (
        "tlcli compare --data digits --sweep arch=simple_cnn,mlp --epochs 3",
        "tlcli compare --data digits --arch mlp --sweep hidden=32,64 --sweep seed=1,2",
        "tlcli compare --data beans --arch resnet18 --sweep freeze=blocks:0,blocks:4",
        "tlcli compare --data cifar10 --run 'cnn: --arch simple_cnn --weights none' \\",
        "              --run 'transfer: --arch resnet18 --input-size 32'",
        "tlcli compare --config study.toml --out checkpoints/study",
    ),
    "report": (
        "tlcli report              # the latest run",
        "tlcli report checkpoints/study-20240101-120000",
    ),
    "sanity": (
        "tlcli sanity --data pokemon --arch efficientnet_b0",
        "tlcli sanity --data digits --arch simple_cnn --weights none --batches 1",
    ),
    "lr-find": (
        "tlcli lr-find --data pokemon --arch efficientnet_b0",
        "tlcli lr-find --data digits --arch simple_cnn --weights none --plot lr.png",
    ),
    "predict": (
        "tlcli predict my_photo.jpg",
        "tlcli predict 'photos/*.jpg' --checkpoint checkpoints/pokemon --csv",
        "tlcli predict photos/ --model best.onnx --topk 3 --json",
    ),
    "summary": (
        "tlcli summary --arch efficientnet_b0 --num-classes 150 --freeze backbone",
        "tlcli summary --arch simple_cnn --num-classes 10",
        "tlcli summary checkpoints/pokemon --depth 2",
    ),
    "models": ("tlcli models", "tlcli models 'resnet*'", "tlcli models 'timm:convnext*' --json"),
    "bench": ("tlcli bench --targets 1,3", "tlcli bench --targets quality --save benchmarks/results.json"),
    "data": ("tlcli data check pokemon", "tlcli data export digits data/digits-png --limit 10"),
    "data check": (
        "tlcli data check pokemon",
        "tlcli data check 'data/flowers/*.tfrec' --class-names classes.txt",
        "tlcli data check digits --val-split 0.1 --json",
    ),
    "data export": (
        "tlcli data export digits data/digits-png",
        "tlcli data export cifar10 samples --limit 1 --download",
    ),
}


def epilog(path: str, exit_codes: str) -> str:
    """The examples of the command at ``path``, then its exit codes."""
    examples = "\n".join(f"  {line}" for line in EXAMPLES[path])
    return f"Examples:\n{examples}\n\n{exit_codes}"


def _one_line_paragraphs(text: str) -> str:
    # Typer keeps a docstring's line breaks after its first paragraph (and in the commands list),
    # which breaks sentences mid-line; a paragraph marked \b keeps them, as in click.
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def make_readable(command) -> None:
    """Prepare a click command, and every command below it, for Typer's rich help."""
    # Click makes the help option on demand and keeps it; made here, it is the one shown.
    help_option = command.get_help_option(typer.Context(command, help_option_names=HELP_OPTION_NAMES))
    if command.help:
        command.help = escape(_one_line_paragraphs(command.help))
    if command.epilog:
        command.epilog = escape(command.epilog)
    for param in [*command.params, *([help_option] if help_option else [])]:
        if getattr(param, "help", None):
            param.help = escape(param.help)
        if getattr(param, "is_flag", False):
            param.metavar = ""  # rather than <bool>: a flag takes no value
        if param.param_type_name == "argument" and param.metavar is None:
            # The convention, [IMAGES]..., rather than images... <list[str]>: the name says what it takes.
            param.metavar = param.name.upper()
            param.display_type_rich = lambda ctx: None
    for sub in getattr(command, "commands", {}).values():
        make_readable(sub)


def command_tree(app: typer.Typer):
    """The click command of ``app``, ready to show its help and refusing an option given twice
    or a number that is not finite (``strict``)."""
    command = typer.main.get_command(app)
    make_readable(command)
    make_strict(command)
    return command
