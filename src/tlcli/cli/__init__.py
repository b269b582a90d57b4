"""The ``tlcli`` command line: a thin shell over the library.

Exit codes: 0 success; 1 a runtime failure, reported as one ``Error: ...`` line on stderr
(``--debug`` adds the traceback); 2 a usage error (unknown option, bad value); 130 interrupted.
"""

from __future__ import annotations

import atexit
import os
import sys
import traceback
from typing import Annotated, Optional

import typer

from tlcli import __version__
from tlcli.cli import output
from tlcli.errors import ConfigError, TlcliError

EXIT_CODES_HELP = "Exit codes: 0 success, 1 runtime failure (one 'Error:' line on stderr), 2 usage error."

app = typer.Typer(
    name="tlcli",
    help=f"Transfer learning for image classification.\n\n{EXIT_CODES_HELP}",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_debug = False
_arguments: list[str] = []  # this invocation's, for commands that start themselves again (--nproc)


def _version(value: bool) -> None:
    if value:
        output.out.print(f"tlcli {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of errors.")] = False,
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    global _debug
    _debug = debug


def _register() -> None:
    from tlcli.cli import bench, compare, data, diagnose, evaluate, export, models, predict, report, serve, summary, train

    app.command("train", epilog=train.EPILOG)(train.train)
    app.command("finetune", epilog=train.EPILOG)(train.finetune)
    app.command("evaluate", epilog=EXIT_CODES_HELP)(evaluate.evaluate)
    app.command("export", epilog=export.EPILOG)(export.export)
    app.command("serve", epilog="Exit codes: 0 stopped, 1 the model could not be loaded or the port is taken, 2 usage error.")(serve.serve)
    app.command("compare", epilog=compare.EPILOG)(compare.compare)
    app.command("report", epilog=EXIT_CODES_HELP)(report.report)
    app.command("sanity", epilog="Exit codes: 0 all checks pass, 1 a check failed or a runtime failure, 2 usage error.")(diagnose.sanity)
    app.command("lr-find", epilog=EXIT_CODES_HELP)(diagnose.lr_find)
    app.command("predict", epilog="Exit codes: 0 all predicted, 1 a failure or any unreadable image, 2 usage error.")(predict.predict)
    app.command("summary", epilog=EXIT_CODES_HELP)(summary.summary)
    app.command("models", epilog=EXIT_CODES_HELP)(models.models)
    app.command("bench", epilog=bench.EPILOG)(bench.bench)
    app.add_typer(data.app, name="data")


_register()


def arguments() -> list[str]:
    """The arguments this ``tlcli`` was called with, after the program's name."""
    return list(_arguments)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code instead of exiting, so tests can call it in-process."""
    global _debug, _arguments
    _debug = False
    _arguments = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="tlcli", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        output.error("interrupted")
        return 130
    except TlcliError as exc:
        if _debug:
            traceback.print_exc()
        output.error(str(exc))
        return 2 if isinstance(exc, ConfigError) else 1
    except typer.TyperException as exc:  # Typer's own click: usage errors and bad values
        exc.show()
        return exc.exit_code
    except Exception as exc:  # a bug: still one line, unless --debug asks for the rest
        if _debug:
            traceback.print_exc()
        output.error(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)")
        return 1
    return result if isinstance(result, int) else 0


def run() -> None:
    """The ``tlcli`` command: ``main``, then a quick exit.

    Tearing the interpreter down after torch (and the torch._dynamo every optimiser imports)
    takes about a second on 2 cores, collecting objects that die with the process anyway, and
    every file tlcli writes is closed by then. So once the atexit handlers have run and the
    output is flushed, the process ends at once.
    """
    code = main()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader gone (| head) or a stream closed: nothing left to save
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
