"""Where the CLI writes: results to stdout, everything else to stderr.

Rich drops colour and animation by itself when a stream is not a terminal and when
``NO_COLOR`` is set, so cron logs stay plain text.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from tlcli.api.progress import PIPE_WIDTH
from tlcli.api.progress import console as err

# As progress's stderr console (``err``, shared): file=None makes Rich look up sys.stdout at each
# write, so redirection works; pipes get room for full paths; no markup, so a run, class or file
# named "mlp [h]" keeps its brackets, in tables and their titles too.
out = Console(soft_wrap=True, highlight=False, markup=False, width=None if sys.stdout.isatty() else PIPE_WIDTH)


def print_json(document: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()


def print_table(table: Table) -> None:
    """A table on stdout, drawn in plain ASCII when stdout is not a terminal (logs, pipes, files)."""
    if not out.is_terminal:
        table.box = box.ASCII
    out.print(table)


def warn(message: str) -> None:
    err.print(f"Warning: {message}", markup=False)


def info(message: str) -> None:
    err.print(message, markup=False)


def error(message: str) -> None:
    err.print(f"Error: {message}", markup=False)
