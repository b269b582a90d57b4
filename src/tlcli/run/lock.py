"""The lock that keeps two runs out of one folder: an exclusive ``flock`` on the folder's
``.lock``, which holds the holder's pid for the refusal message. Removed on release, so a
``.lock`` left behind marks a run that was killed."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from tlcli.core.errors import TlcliError
from tlcli.run.marker import LOCK


class FolderLock:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._handle = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> None:
        """Lock, or refuse naming the holder. ``release`` removes ``.lock`` before unlocking, so a
        file locked just as it was removed is let go, and the one now at ``.lock`` is locked instead."""
        path = self.folder / LOCK
        while True:
            handle = open(path, "a+")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise TlcliError(f"run folder {self.folder} is in use by {holder}; wait for it or choose another run folder") from None
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                    break
            handle.close()
        handle.seek(0)
        handle.truncate()
        handle.write(f"tlcli pid {os.getpid()}")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            (self.folder / LOCK).unlink(missing_ok=True)
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def holder(folder: Path) -> str | None:
    """Who holds the folder's lock (a run still writing), or None; takes nothing."""
    try:
        with open(Path(folder) / LOCK) as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return handle.read().strip() or "another process"
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    except OSError:  # no lock file: nobody writes here
        pass
    return None
