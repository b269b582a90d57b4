"""Files written so that a crash or a full disk never leaves half of one: each write goes to a
temporary file in the same folder, is flushed and fsynced, then ``os.replace``d over the target."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from pathlib import Path

from tlcli.core.errors import CheckpointError, TlcliError
from tlcli.core.stopping import deferred


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` becomes a hard link to ``source``'s current contents (no copy, no second
    fsync); a later replace of ``source`` leaves it alone. Copies where links are refused."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.link")
    try:
        temporary.unlink(missing_ok=True)
        os.link(source, temporary)
        os.replace(temporary, target)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink()
        with open(source, "rb") as stream:
            write_atomically(target, lambda out: shutil.copyfileobj(stream, out, 1 << 20))
        return
    fsync_folder(target.parent)


def write_file_atomically(data: bytes, path: Path) -> None:
    write_atomically(Path(path), lambda stream: stream.write(data))


def write_atomically(path: Path, write, *also: Path) -> None:
    """Call ``write(stream)`` on a temporary file beside ``path``, fsync it, then replace
    ``path``: readers see the old file or the new one, never a part. Each of ``also`` gets the
    same contents first, so none of them is ever behind ``path``. A termination signal waits for
    the write to end (``stopping.deferred``)."""
    with deferred():
        _write_atomically(path, write, also)


def _write_atomically(path: Path, write, also) -> None:
    try:
        handle, temporary = _temporary_beside(path)
    except OSError as exc:  # a missing, read-only or full folder: nothing was written
        raise write_error(path, exc) from None
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        for target in also:
            link_or_copy(temporary, target)
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        cause = _os_error(exc)
        if cause is not None:
            raise write_error(path, cause) from None
        raise
    fsync_folder(path.parent)


def _temporary_beside(path: Path) -> tuple[int, Path]:
    """A new, open file ``.NAME.RANDOM.tmp`` beside ``path``, with the permissions the umask
    gives (mkstemp's are 0600, which would hide a run's files from the rest of a team)."""
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temporary
        except FileExistsError:
            continue


def write_error(path: Path, exc: OSError) -> CheckpointError:
    """One sentence for a write that failed; a full disk says so in plain words."""
    if exc.errno == errno.ENOSPC:
        return CheckpointError(f"no space left on device while writing {path}")
    return CheckpointError(f"cannot write {path}: {exc.strerror or exc}")


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind a failed write: torch.save reports a full disk as a RuntimeError
    ("unexpected pos") raised while the stream's OSError is being handled."""
    while isinstance(exc, Exception):
        if isinstance(exc, OSError):
            return exc
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return None


def fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); harmless where folders cannot be opened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_regular_file(path: Path, *, limit: int, what: str) -> bytes:
    """The bytes of ``path``, refused unless it is a regular file of at most ``limit`` bytes.

    Opened without blocking, so a FIFO is refused instead of waiting forever for a writer, and
    checked on the open descriptor, so a link to ``/dev/zero`` or a file swapped in after a check
    is refused too; at most ``limit + 1`` bytes are ever read."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise TlcliError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode):  # before fdopen, which refuses a folder with its own error
        os.close(descriptor)
        raise TlcliError(f"{what} {path} is not a regular file (a folder, a device or a pipe); give a file")
    with os.fdopen(descriptor, "rb") as stream:
        # Refused by its size when it says so; the read is bounded too, for a file still growing.
        data = b"" if info.st_size > limit else stream.read(limit + 1)
    if info.st_size > limit or len(data) > limit:
        raise TlcliError(f"{what} {path} is larger than {limit:,} bytes, the most tlcli reads of one")
    return data
