"""Termination signals handled like Ctrl-C, and a stop asked for at the end of an epoch.

Schedulers and supervisors stop a process with SIGTERM (timeout, systemd, Kubernetes, SLURM) or
SIGHUP (a closed terminal); Python's default for both is to die without a word, leaving a stale
lock and no account of what was saved. ``handling_signals`` turns them into ``Terminated``, a
KeyboardInterrupt, so the one interrupt path reports and cleans up for all of them. SIGUSR1 asks
for a stop after the current epoch's checkpoint: what SLURM's ``--signal=USR1@60`` or a
Kubernetes preStop hook sends ahead of the real stop.
"""

from __future__ import annotations

import contextlib
import signal
import threading

TERMINATING = (signal.SIGTERM, signal.SIGHUP)
STOP_AFTER_EPOCH = signal.SIGUSR1

_stop_asked = threading.Event()


class Terminated(KeyboardInterrupt):
    """A termination signal, raised where the main thread is; exits 128 + ``signum``."""

    def __init__(self, signum: int):
        super().__init__(signal_name(signum))
        self.signum = signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def exit_code(interrupt: BaseException) -> int:
    """128 + the signal's number, as a shell reports a process the signal ended (130 for Ctrl-C)."""
    return 128 + getattr(interrupt, "signum", signal.SIGINT)


def stop_asked() -> bool:
    """Whether a stop after the current epoch was asked for (SIGUSR1)."""
    return _stop_asked.is_set()


@contextlib.contextmanager
def handling_signals():
    """SIGTERM and SIGHUP raise ``Terminated`` once (a second one while the first is handled is
    ignored, so the clean-up finishes; SIGKILL remains), SIGUSR1 sets ``stop_asked``. The previous
    handlers come back afterwards. Outside the main thread signals cannot be caught: nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = []

    def terminate(signum, _frame):
        if not raised:
            raised.append(signum)
            raise Terminated(signum)

    previous = {signum: signal.signal(signum, terminate) for signum in TERMINATING}
    previous[STOP_AFTER_EPOCH] = signal.signal(STOP_AFTER_EPOCH, lambda *_: _stop_asked.set())
    _stop_asked.clear()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _stop_asked.clear()
