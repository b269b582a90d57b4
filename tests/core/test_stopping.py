"""``tlcli.core.stopping``: termination signals raised as ``Terminated`` once, held back inside
``deferred`` blocks and imports, SIGUSR1 as a stop after the epoch, the previous handlers back
afterwards; and the names and exit codes messages and the CLI give a signal.

Signals are sent to this process only inside ``handling_signals``, which replaces the handlers
(SIGUSR1's default would end the test run)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from tlcli.core import stopping
from tlcli.core.errors import Interrupted
from tlcli.core.stopping import Terminated, deferred, handling_signals


def _send(signum: int) -> None:
    os.kill(os.getpid(), signum)


@pytest.fixture
def sighup_ignored():
    """SIGHUP inherited as ignored, as under ``nohup``."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGHUP, previous)


def test_signal_names_and_how_messages_say_what_stopped_the_command():
    assert stopping.signal_name(signal.SIGTERM) == "SIGTERM"
    assert stopping.stopped_by(signal.SIGINT) == "interrupted"
    assert stopping.stopped_by(signal.SIGTERM) == "stopped by SIGTERM"
    assert stopping.stopped_by(signal.SIGHUP) == "stopped by SIGHUP"


def test_exit_codes_are_128_plus_the_signal_as_a_shell_reports_them():
    assert stopping.exit_code(Terminated(signal.SIGTERM)) == 128 + signal.SIGTERM
    assert stopping.exit_code(Terminated(signal.SIGHUP)) == 128 + signal.SIGHUP
    assert stopping.exit_code(Interrupted("stopped", signum=signal.SIGTERM)) == 128 + signal.SIGTERM
    assert stopping.exit_code(KeyboardInterrupt()) == 130  # a plain Ctrl-C


def test_terminated_is_a_keyboard_interrupt_named_after_its_signal():
    error = Terminated(signal.SIGTERM)
    assert isinstance(error, KeyboardInterrupt) and str(error) == "SIGTERM" and error.signum == signal.SIGTERM


def test_sigterm_raises_terminated_and_the_previous_handlers_come_back():
    before = {signum: signal.getsignal(signum) for signum in (*stopping.TERMINATING, signal.SIGUSR1, signal.SIGALRM)}
    with pytest.raises(Terminated) as raised, handling_signals():
        assert stopping.raised_signal() is None
        _send(signal.SIGTERM)
        pytest.fail("SIGTERM did not interrupt")
    assert raised.value.signum == signal.SIGTERM
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_raised_signal_names_the_signal_and_a_second_one_is_ignored_during_clean_up():
    with handling_signals():
        with pytest.raises(Terminated):
            _send(signal.SIGHUP)
        assert stopping.raised_signal() == signal.SIGHUP
        _send(signal.SIGTERM)  # the clean-up after the first must finish
        assert stopping.raised_signal() == signal.SIGHUP


def test_sigusr1_asks_for_a_stop_after_the_epoch_without_raising():
    with handling_signals():
        assert not stopping.stop_asked()
        _send(signal.SIGUSR1)
        assert stopping.stop_asked()
        assert stopping.raised_signal() is None
    assert not stopping.stop_asked()  # the next command starts afresh


def test_a_signal_inside_a_deferred_block_waits_for_its_end():
    finished = []
    with handling_signals(), pytest.raises(Terminated) as raised:
        with deferred():
            _send(signal.SIGTERM)
            finished.append("after the signal")
        pytest.fail("the deferred signal was not raised at the block's end")
    assert finished == ["after the signal"] and raised.value.signum == signal.SIGTERM


def test_nested_deferred_blocks_raise_only_when_the_outermost_ends():
    reached = []
    with handling_signals(), pytest.raises(Terminated):
        with deferred():
            with deferred():
                _send(signal.SIGINT)
            reached.append("inner block ended without raising")
    assert reached == ["inner block ended without raising"]


def test_deferred_without_a_signal_changes_nothing():
    with handling_signals():
        with deferred():
            value = 1
        assert value == 1 and stopping.raised_signal() is None


def test_a_deferred_block_in_another_thread_does_not_hold_back_the_main_thread():
    entered, release = threading.Event(), threading.Event()

    def writer():
        with deferred():
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=writer)
    with handling_signals():
        thread.start()
        try:
            entered.wait(5)
            with pytest.raises(Terminated):
                _send(signal.SIGTERM)
                time.sleep(5)  # the handler runs as soon as the main thread executes again
        finally:
            release.set()
            thread.join()


def test_a_signal_during_an_import_waits_for_the_import_to_finish(tmp_path, monkeypatch):
    # An exception raised inside an import leaves the module half made: it must finish first.
    (tmp_path / "slow_to_import.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\nFINISHED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slow_to_import", raising=False)
    with handling_signals(), pytest.raises(Terminated):
        import slow_to_import  # noqa: F401
        time.sleep(5)  # the retry timer raises it here, once the import is done
    assert sys.modules["slow_to_import"].FINISHED is True
    monkeypatch.delitem(sys.modules, "slow_to_import")


def test_not_ignored_keeps_signals_the_process_was_told_to_ignore(sighup_ignored):
    assert stopping.not_ignored([signal.SIGHUP, signal.SIGTERM]) == [signal.SIGTERM]


def test_an_ignored_sighup_stays_ignored_inside_handling_signals(sighup_ignored):
    with handling_signals():
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL


def test_handling_signals_outside_the_main_thread_changes_no_handler():
    seen = []

    def in_a_thread():
        with handling_signals():
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert seen == [before]


def test_a_nested_handling_signals_block_keeps_the_outer_ones_handlers():
    with handling_signals():
        outer = signal.getsignal(signal.SIGTERM)
        with handling_signals():
            assert signal.getsignal(signal.SIGTERM) is outer
        # The inner block's end must not put back the handlers from before the outer one.
        assert signal.getsignal(signal.SIGTERM) is outer
        with pytest.raises(Terminated):
            _send(signal.SIGTERM)
