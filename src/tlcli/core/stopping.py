"""Termination signals handled like Ctrl-C, and a stop asked for at the end of an epoch.

Schedulers and supervisors stop a process with SIGTERM (timeout, systemd, Kubernetes, SLURM) or
SIGHUP (a closed terminal); Python's default for both is to die without a word, leaving a stale
lock and no account of what was saved. ``handling_signals`` turns them into ``Terminated``, a
KeyboardInterrupt, so the one interrupt path reports and cleans up for all of them. SIGUSR1 asks
for a stop after the current epoch's checkpoint: what SLURM's ``--signal=USR1@60`` or a
Kubernetes preStop hook sends ahead of the real stop.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import queue
import signal
import threading

TERMINATING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_AFTER_EPOCH = signal.SIGUSR1

_RETRY_S = 0.02
_UNSAFE_CODE = ("<frozen importlib", threading.__file__, queue.__file__, os.path.dirname(concurrent.futures.__file__))
_stop_asked = threading.Event()


class _State:
    handling = False  # handling_signals is active
    raised: int | None = None  # the termination signal raised already: later ones are ignored
    deferring = 0  # depth of ``deferred`` blocks
    pending: int | None = None  # a signal that arrived inside one


class Terminated(KeyboardInterrupt):
    """A termination signal, raised where the main thread is; exits 128 + ``signum``."""

    def __init__(self, signum: int):
        super().__init__(signal_name(signum))
        self.signum = signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def stopped_by(signum: int) -> str:
    """How a message says what ended the command: Ctrl-C interrupts, the others stop."""
    return "interrupted" if signum == signal.SIGINT else f"stopped by {signal_name(signum)}"


def exit_code(interrupt: BaseException) -> int:
    """128 + the signal's number, as a shell reports a process the signal ended (130 for Ctrl-C)."""
    return 128 + getattr(interrupt, "signum", signal.SIGINT)


def stop_asked() -> bool:
    """Whether a stop after the current epoch was asked for (SIGUSR1)."""
    return _stop_asked.is_set()


def _terminate(signum, frame) -> None:
    if _State.raised is not None:
        return
    if _State.deferring or _unsafe(frame):
        _State.pending = _State.pending or signum
        if not _State.deferring:  # look again shortly: an import or a wait cannot say when it is done
            signal.setitimer(signal.ITIMER_REAL, _RETRY_S)
        return
    _State.raised, _State.pending = signum, None
    raise Terminated(signum)


def _retry(_signum, frame) -> None:
    if _State.pending is not None and not _State.deferring:
        _terminate(_State.pending, frame)


def _unsafe(frame) -> bool:
    """Whether the main thread is inside an import or a threading primitive, where an exception
    breaks more than the run: an import cut in half leaves a module half made in ``sys.modules``
    (numpy without its functions, and libraries that guard imports with a bare ``except``
    swallow it), and one raised inside a lock's or a condition's own code leaves it in a state
    its ``with`` block cannot undo ("release unlocked lock")."""
    while frame is not None:
        if frame.f_code.co_filename.startswith(_UNSAFE_CODE):
            return True
        frame = frame.f_back
    return False


def not_ignored(signals) -> list[int]:
    """Those of ``signals`` the process was not told to ignore: under ``nohup`` (SIGHUP) or as a
    shell's background job (SIGINT) they are inherited as ignored, and must stay so."""
    return [signum for signum in signals if signal.getsignal(signum) is not signal.SIG_IGN]


def raised_signal() -> int | None:
    """The termination signal raised in this ``handling_signals`` block, if any."""
    return _State.raised


@contextlib.contextmanager
def deferred():
    """A termination signal that arrives inside waits for the block's end: a file being written
    (torch.save turns an exception raised inside it into a RuntimeError) is finished first.
    Signals reach the main thread alone: other threads' blocks change nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _State.deferring += 1
    try:
        yield
    finally:
        _State.deferring -= 1
        if not _State.deferring and _State.pending is not None:
            signum, _State.pending = _State.pending, None
            _State.raised = signum
            raise Terminated(signum)


@contextlib.contextmanager
def handling_signals():
    """SIGINT, SIGTERM and SIGHUP raise ``Terminated`` once (a second one while the first is
    handled is ignored, so the clean-up finishes; SIGKILL remains), outside imports and
    ``deferred`` blocks (there it waits for their end), SIGUSR1 sets ``stop_asked``.
    The previous handlers come back afterwards. Outside the main thread signals cannot be caught:
    nothing changes."""
    if threading.current_thread() is not threading.main_thread() or _State.handling:
        yield
        return
    previous = {signum: signal.signal(signum, _terminate) for signum in not_ignored(TERMINATING)}
    previous[STOP_AFTER_EPOCH] = signal.signal(STOP_AFTER_EPOCH, lambda *_: _stop_asked.set())
    previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, _retry)
    _State.handling, _State.raised, _State.pending = True, None, None
    _stop_asked.clear()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _State.handling = False
        _stop_asked.clear()
