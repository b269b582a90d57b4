"""The ``tlcli`` command line: a thin shell over the library.

Exit codes: 0 success; 1 a runtime failure, reported as one ``Error: ...`` line on stderr
(``--debug`` adds the traceback); 2 a usage error (unknown option, bad value); 128 + N ended by
signal N: 130 Ctrl-C (SIGINT), 143 SIGTERM, 129 SIGHUP, 138 stopped after an epoch on SIGUSR1.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import traceback
from typing import Annotated, Optional

import typer

from tlcli.core.version import __version__
from tlcli.cli import output
from tlcli.cli.help import HELP_OPTION_NAMES, command_tree, epilog
from tlcli.core.errors import ConfigError, Interrupted, TlcliError
from tlcli.core.stopping import Terminated, exit_code, handling_signals, raised_signal, stopped_by

EXIT_CODES_HELP = ("Exit codes: 0 success, 1 runtime failure (one 'Error:' line on stderr), 2 usage error, "
                   "128+N ended by signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).")

app = typer.Typer(
    name="tlcli",
    help="Transfer learning for image classification.",
    epilog=epilog("", EXIT_CODES_HELP),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": HELP_OPTION_NAMES},
)

_debug = False
_arguments: list[str] = []  # this invocation's, for commands that start themselves again (--nproc)


def _version(value: bool) -> None:
    if value:
        output.out.print(f"tlcli {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of errors (also after the command: tlcli train --debug).")] = False,
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    global _debug
    _debug = debug


def _report_interrupt(interrupt: BaseException) -> None:
    if getattr(interrupt, "signum", None) == signal.SIGPIPE:
        return  # `| head` closed the output: it has what it wanted, as with any Unix filter
    if isinstance(interrupt, Interrupted):
        output.error(str(interrupt))
    else:
        output.error(stopped_by(getattr(interrupt, "signum", signal.SIGINT)))


def _register() -> None:
    from tlcli.cli import bench, compare, data, evaluate, export, lr_find, models, predict, report, sanity, serve, summary, train

    app.command("train", epilog=epilog("train", train.EPILOG))(train.train)
    app.command("finetune", epilog=epilog("finetune", train.EPILOG))(train.finetune)
    app.command("evaluate", epilog=epilog("evaluate", EXIT_CODES_HELP))(evaluate.evaluate)
    app.command("export", epilog=epilog("export", export.EPILOG))(export.export)
    app.command("serve", epilog=epilog("serve", "Exit codes: 0 stopped, 1 the model could not be loaded or the port is taken, 2 usage error."))(serve.serve)
    app.command("compare", epilog=epilog("compare", compare.EPILOG))(compare.compare)
    app.command("report", epilog=epilog("report", EXIT_CODES_HELP))(report.report)
    app.command("sanity", epilog=epilog("sanity", "Exit codes: 0 all checks pass, 1 a check failed or a runtime failure, 2 usage error, 128+N ended by signal N (130 Ctrl-C, 143 SIGTERM)."))(sanity.sanity)
    app.command("lr-find", epilog=epilog("lr-find", EXIT_CODES_HELP))(lr_find.lr_find)
    app.command("predict", epilog=epilog("predict", predict.EPILOG))(predict.predict)
    app.command("summary", epilog=epilog("summary", EXIT_CODES_HELP))(summary.summary)
    app.command("models", epilog=epilog("models", EXIT_CODES_HELP))(models.models)
    app.command("bench", epilog=epilog("bench", bench.EPILOG))(bench.bench)
    app.add_typer(data.app, name="data", epilog=epilog("data", EXIT_CODES_HELP))


_register()


def _debug_first(args: list[str]) -> list[str]:
    """--debug is tlcli's own option, but people type it after the command too: move it first."""
    end = args.index("--") if "--" in args else len(args)
    if "--debug" not in args[:end]:
        return args
    return ["--debug", *(arg for arg in args[:end] if arg != "--debug"), *args[end:]]


def arguments() -> list[str]:
    """The arguments this ``tlcli`` was called with, after the program's name."""
    return list(_arguments)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code instead of exiting, so tests can call it in-process."""
    global _debug, _arguments
    _debug = False
    _arguments = list(sys.argv[1:] if argv is None else argv)
    args = _debug_first(list(_arguments))
    try:
        with handling_signals():
            try:
                # Made and invoked here rather than through the command's main(), which turns
                # Ctrl-C and termination signals into a silent 130 and drops a run's account of them.
                command = command_tree(app)
                with command.make_context("tlcli", args) as context:
                    result = command.invoke(context)
                if (signum := raised_signal()) is not None:  # a signal some library swallowed
                    raise Terminated(signum)
            except (typer.Abort, KeyboardInterrupt) as exc:  # said while a second signal still waits
                interrupt = exc.__cause__ if isinstance(exc.__cause__, KeyboardInterrupt) else exc  # a prompt's Abort
                _report_interrupt(interrupt)
                return exit_code(interrupt)
    except typer.Exit as exc:
        return exc.exit_code
    except BrokenPipeError:  # `| head` closed the output: it has what it wanted, as with any Unix filter
        return 128 + signal.SIGPIPE
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
