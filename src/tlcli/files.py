"""Files written so that a crash or a full disk never leaves half of one: each write goes to a
temporary file in the same folder, is flushed and fsynced, then ``os.replace``d over the target."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from tlcli.errors import CheckpointError


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


def write_atomically(path: Path, write) -> None:
    """Call ``write(stream)`` on a temporary file beside ``path``, fsync it, then replace
    ``path``: readers see the old file or the new one, never a part."""
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # a missing or read-only folder: nothing was written
        raise CheckpointError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise CheckpointError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); harmless where folders cannot be opened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
