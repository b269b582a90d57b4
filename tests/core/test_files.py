"""``tlcli.core.files``: atomic writes (old file or new one, never a part, no temporary left
behind), hard links with a copying fallback, plain-word write errors, and bounded reads that
refuse what is not a regular file."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest

from tlcli.core import files
from tlcli.core.errors import CheckpointError, TlcliError
from tlcli.core.stopping import Terminated, handling_signals


def _leftovers(folder: Path) -> list[str]:
    """Temporary files a write would leave beside its target (``.NAME.RANDOM.tmp`` / ``.link``)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_write_file_atomically_replaces_the_contents_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    target.write_bytes(b"old contents")
    files.write_file_atomically(b"new", target)
    assert target.read_bytes() == b"new"
    assert _leftovers(tmp_path) == []


def test_a_written_file_gets_the_umask_permissions_not_mkstemps_0600(tmp_path):
    previous = os.umask(0o022)
    try:
        files.write_file_atomically(b"x", tmp_path / "shared.bin")
    finally:
        os.umask(previous)
    # A team reading a run's folder needs group and other read access.
    assert (tmp_path / "shared.bin").stat().st_mode & 0o777 == 0o644


def test_write_atomically_gives_each_also_path_the_same_contents_first(tmp_path):
    target, copy = tmp_path / "best.pt", tmp_path / "last.pt"
    files.write_atomically(target, lambda stream: stream.write(b"weights"), copy)
    assert target.read_bytes() == copy.read_bytes() == b"weights"
    # A hard link, not a second write: both names are one file until one is replaced.
    assert target.stat().st_ino == copy.stat().st_ino
    assert _leftovers(tmp_path) == []


def test_a_write_that_raises_keeps_the_old_file_and_the_exception(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"complete old file")

    def half_then_fail(stream):
        stream.write(b"half")
        raise ValueError("serialiser broke")

    with pytest.raises(ValueError, match="serialiser broke"):
        files.write_atomically(target, half_then_fail)
    assert target.read_bytes() == b"complete old file"
    assert _leftovers(tmp_path) == []


def test_an_os_error_while_writing_becomes_a_checkpoint_error_naming_the_file(tmp_path):
    def fail(stream):
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(CheckpointError, match=r"cannot write .*model\.pt: Input/output error"):
        files.write_atomically(tmp_path / "model.pt", fail)
    assert _leftovers(tmp_path) == []


def test_a_full_disk_hidden_behind_a_runtime_error_is_reported_in_plain_words(tmp_path):
    # torch.save reports ENOSPC as a RuntimeError raised while the OSError is being handled.
    def torch_save_on_a_full_disk(stream):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("unexpected pos 64 vs 0")

    with pytest.raises(CheckpointError, match=r"^no space left on device while writing .*model\.pt$"):
        files.write_atomically(tmp_path / "model.pt", torch_save_on_a_full_disk)


def test_a_runtime_error_that_suppressed_its_context_is_not_taken_for_a_write_error(tmp_path):
    def fail(stream):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("a bug of its own") from None

    with pytest.raises(RuntimeError, match="a bug of its own"):
        files.write_atomically(tmp_path / "model.pt", fail)


def test_writing_into_a_missing_folder_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="cannot write"):
        files.write_file_atomically(b"x", tmp_path / "no such folder" / "file")


def test_write_error_words_a_full_disk_and_other_failures_differently(tmp_path):
    full = files.write_error(tmp_path / "a", OSError(errno.ENOSPC, "No space left on device"))
    denied = files.write_error(tmp_path / "a", OSError(errno.EACCES, "Permission denied"))
    assert isinstance(full, CheckpointError) and str(full) == f"no space left on device while writing {tmp_path / 'a'}"
    assert str(denied) == f"cannot write {tmp_path / 'a'}: Permission denied"


def test_a_termination_signal_during_a_write_waits_for_the_write_to_end(tmp_path):
    target = tmp_path / "last.pt"

    def write_while_signalled(stream):
        stream.write(b"first half ")
        os.kill(os.getpid(), signal.SIGTERM)
        stream.write(b"second half")

    with handling_signals(), pytest.raises(Terminated):
        files.write_atomically(target, write_while_signalled)
    assert target.read_bytes() == b"first half second half"


def test_link_or_copy_links_and_a_later_replace_of_the_source_leaves_the_target(tmp_path):
    source, target = tmp_path / "best.pt", tmp_path / "epoch-3.pt"
    source.write_bytes(b"epoch 3")
    files.link_or_copy(source, target)
    assert target.stat().st_ino == source.stat().st_ino
    files.write_file_atomically(b"epoch 4", source)
    assert target.read_bytes() == b"epoch 3"


def test_link_or_copy_copies_where_links_are_refused(tmp_path, monkeypatch):
    source, target = tmp_path / "best.pt", tmp_path / "copy.pt"
    source.write_bytes(b"\x00\x01" * 1000)
    target.write_bytes(b"stale")

    def refuse(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")  # as on FAT or some network mounts

    monkeypatch.setattr(os, "link", refuse)
    files.link_or_copy(source, target)
    assert target.read_bytes() == source.read_bytes()
    assert target.stat().st_ino != source.stat().st_ino
    assert _leftovers(tmp_path) == []


def test_read_regular_file_reads_up_to_the_limit_and_refuses_beyond(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes(b"0123456789")
    assert files.read_regular_file(path, limit=10, what="CSV") == b"0123456789"
    with pytest.raises(TlcliError, match=r"CSV .*labels\.csv is larger than 9 bytes"):
        files.read_regular_file(path, limit=9, what="CSV")


def test_read_regular_file_refuses_a_folder_a_fifo_and_a_link_to_a_device(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # opened without blocking: no writer ever comes
    device = tmp_path / "zeros"
    device.symlink_to("/dev/zero")
    for path in (tmp_path, fifo, device):
        with pytest.raises(TlcliError, match="is not a regular file"):
            files.read_regular_file(path, limit=100, what="label file")


def test_read_regular_file_names_a_missing_file(tmp_path):
    with pytest.raises(TlcliError, match=r"cannot read label file .*absent: No such file"):
        files.read_regular_file(tmp_path / "absent", limit=100, what="label file")


def test_fsync_folder_is_harmless_where_the_folder_cannot_be_opened(tmp_path):
    files.fsync_folder(tmp_path)
    # Best effort only: a missing folder must not turn a finished write into an error.
    assert files.fsync_folder(tmp_path / "missing") is None
