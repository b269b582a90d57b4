"""``tlcli.run.lock``: a FolderLock keeps a second holder out and names the first, release removes
``.lock`` (so one left behind marks a killed run), and ``holder`` tells who writes without taking
the lock."""

from __future__ import annotations

import fcntl
import os

import pytest

from tlcli.core.errors import TlcliError
from tlcli.run.lock import FolderLock, holder
from tlcli.run.marker import LOCK

OWN = f"tlcli pid {os.getpid()}"


@pytest.fixture
def lock(tmp_path):
    first = FolderLock(tmp_path)
    first.acquire()
    yield first
    first.release()


def test_acquiring_writes_the_holders_pid_into_dot_lock(tmp_path, lock):
    assert lock.held
    assert (tmp_path / LOCK).read_text() == OWN


def test_a_second_holder_is_refused_and_told_who_holds_the_folder(tmp_path, lock):
    # flock conflicts between two opens of the file, even in one process.
    second = FolderLock(tmp_path)
    with pytest.raises(TlcliError, match=f"run folder {tmp_path} is in use by {OWN}; wait for it"):
        second.acquire()
    assert not second.held
    assert lock.held and (tmp_path / LOCK).read_text() == OWN


def test_release_removes_dot_lock_and_lets_the_next_run_in(tmp_path, lock):
    lock.release()
    assert not lock.held
    assert not (tmp_path / LOCK).exists()
    second = FolderLock(tmp_path)
    second.acquire()
    try:
        assert second.held and (tmp_path / LOCK).read_text() == OWN
    finally:
        second.release()


def test_releasing_a_lock_never_taken_does_nothing(tmp_path):
    (tmp_path / LOCK).write_text("tlcli pid 1")
    FolderLock(tmp_path).release()
    assert (tmp_path / LOCK).read_text() == "tlcli pid 1"


def test_a_lock_file_left_by_a_killed_run_is_taken_over(tmp_path):
    (tmp_path / LOCK).write_text("tlcli pid 999999 and some longer text")
    taken = FolderLock(tmp_path)
    taken.acquire()
    try:
        assert (tmp_path / LOCK).read_text() == OWN
    finally:
        taken.release()


def test_a_holder_that_wrote_nothing_is_another_process(tmp_path):
    with open(tmp_path / LOCK, "w") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(TlcliError, match="is in use by another process"):
            FolderLock(tmp_path).acquire()
        assert holder(tmp_path) == "another process"


def test_holder_names_a_live_holder(tmp_path, lock):
    assert holder(tmp_path) == OWN


def test_holder_is_none_without_a_lock_file_or_with_one_nobody_holds(tmp_path):
    assert holder(tmp_path) is None
    (tmp_path / LOCK).write_text("tlcli pid 999999")
    assert holder(tmp_path) is None
    # Looking removes nothing: the leftover still tells that run was killed.
    assert (tmp_path / LOCK).read_text() == "tlcli pid 999999"


def test_looking_at_a_held_lock_leaves_it_held(tmp_path, lock):
    assert holder(tmp_path) == OWN
    assert holder(tmp_path) == OWN
    with pytest.raises(TlcliError, match="is in use by"):
        FolderLock(tmp_path).acquire()
    assert lock.held and (tmp_path / LOCK).read_text() == OWN
