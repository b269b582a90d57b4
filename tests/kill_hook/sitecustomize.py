"""Fault injection for tests/run/test_crash.py, imported at start-up by any Python whose PYTHONPATH
holds this folder. With $TLCLI_KILL_DIR set, every ``os.replace``, ``os.link`` and ``os.fsync`` on
a path under that folder is counted and listed in $TLCLI_KILL_LOG; the one numbered
$TLCLI_KILL_AT is never made: the process SIGKILLs itself first, as a power cut would stop it
(or sends itself $TLCLI_KILL_SIGNAL: SIGINT is a Ctrl-C at that point). With $TLCLI_KILL_HOOK=lazy
the calls are hooked whatever the environment, which is read at each call: a server that forks
commands (tests/forked_cli.py) starts with it, and each command brings its own $TLCLI_KILL_DIR."""

import os
import signal

calls = 0


def _folder() -> str | None:
    folder = os.environ.get("TLCLI_KILL_DIR")
    return os.path.realpath(folder) if folder else None


def _path(target) -> str:
    if isinstance(target, (str, bytes, os.PathLike)):  # the link itself, not where a symlink points
        folder, name = os.path.split(os.path.abspath(os.fsdecode(target)))
        return os.path.join(os.path.realpath(folder), name)
    descriptor = target if isinstance(target, int) else target.fileno()
    return os.readlink(f"/proc/self/fd/{descriptor}")


def _counted(name, call):
    def hooked(target, *args, **kwargs):
        global calls
        folder = _folder()
        path = _path(target) if folder else ""
        if folder and (path == folder or path.startswith(folder + os.sep)):
            calls += 1
            if calls == int(os.environ.get("TLCLI_KILL_AT", "0")):
                os.kill(os.getpid(), getattr(signal, os.environ.get("TLCLI_KILL_SIGNAL", "SIGKILL")))
            with open(os.environ["TLCLI_KILL_LOG"], "a") as log:
                log.write(f"{name} {os.path.basename(path)}\n")
        return call(target, *args, **kwargs)

    return hooked


if os.environ.get("TLCLI_KILL_DIR") or os.environ.get("TLCLI_KILL_HOOK") == "lazy":
    for _name in ("replace", "link", "fsync"):
        setattr(os, _name, _counted(_name, getattr(os, _name)))
