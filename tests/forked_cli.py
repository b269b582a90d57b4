"""`tlcli` commands run in processes forked from one that has imported torch and tlcli already.

A shell script's every `tlcli ...` line would otherwise spend seconds importing torch, timm and
matplotlib before doing a second of work. ``python forked_cli.py serve SOCKET`` imports them
once; ``python forked_cli.py SOCKET ARGS...`` (what a script's ``$TLCLI`` becomes) hands the
server its arguments, working folder, environment and standard streams, and exits with the code
of the command, which runs in a fresh fork with exactly those, through ``tlcli.cli.run``.
The server never runs a parallel region itself, so every fork starts without OpenMP threads.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

_MESSAGE = 1 << 20  # the largest request: arguments, folder and environment as JSON


def _run_command(request: dict, streams: list[int]) -> None:
    for target, stream in enumerate(streams):
        os.dup2(stream, target)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["tlcli", *request["argv"]]
    from tlcli.cli import run

    run()  # ends the process with the command's exit code


def serve(path: str) -> None:
    import torch  # noqa: F401 - imported once, inherited by every command
    import tlcli.cli  # noqa: F401
    from tlcli.evaluation import evaluate, report  # noqa: F401
    from tlcli.deploy import exporting  # noqa: F401
    from tlcli.experiments import compare  # noqa: F401
    from tlcli.run import story  # noqa: F401
    # What most commands import on first use: scikit-learn (the digits, metrics: 1.7 s with scipy
    # and pandas) and matplotlib's pyplot (figures).
    import sklearn.datasets, sklearn.metrics  # noqa: E401, F401
    from tlcli.core.plots import pyplot

    pyplot()

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen()
    while True:
        connection, _ = listener.accept()
        with connection:
            payload, streams, _, _ = socket.recv_fds(connection, _MESSAGE, 3)
            child = os.fork()
            if child == 0:
                listener.close()
                _run_command(json.loads(payload), streams)
            for stream in streams:
                os.close(stream)
            _, status = os.waitpid(child, 0)
            code = os.waitstatus_to_exitcode(status)
            connection.send(str(code if code >= 0 else 128 - code).encode())


def call(path: str, argv: list[str]) -> int:
    request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as connection:
        connection.connect(path)
        socket.send_fds(connection, [request], [0, 1, 2])
        return int(connection.recv(16) or b"1")


@contextlib.contextmanager
def forked_tlcli(folder: Path, env: dict | None = None):
    """A server in ``folder`` for as long as the block lasts; yields the command that runs
    ``tlcli ARGS...`` through it (append the arguments). ``env``: the server's own environment."""
    socket_path = folder / "socket"
    server = subprocess.Popen([sys.executable, __file__, "serve", str(socket_path)], env=env)
    try:
        while not socket_path.exists():
            assert server.poll() is None, "the tlcli server did not start"
            time.sleep(0.05)
        yield [sys.executable, __file__, str(socket_path)]
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        sys.exit(call(sys.argv[1], sys.argv[2:]))
