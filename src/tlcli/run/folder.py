"""A run's folder: what may be there before a run takes it, its lock, its documents and its
record of epochs (``record``), and which files are the run's (``marker``)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from tlcli.core.errors import TlcliError
from tlcli.core.files import write_file_atomically
from tlcli.run.lock import FolderLock
from tlcli.run.marker import MARKER, RUN_FILES, mark, refuse_foreign, remove_run_files, run_id
from tlcli.run.record import EpochRecord


class RunFolder:
    """A run's output folder, locked for as long as the run writes to it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.lock = FolderLock(self.path)
        self.record = EpochRecord(self.path)
        self._created = False  # open made the folder: close removes it if nothing was written

    last = property(lambda self: self.path / "last.pt")
    best = property(lambda self: self.path / "best.pt")

    def open(self, *, fresh: bool, overwrite: bool = False) -> RunFolder:
        """Create and lock the folder. A ``fresh`` run refuses a folder tlcli did not mark as a
        run folder unless it is empty, and a marked one holding a checkpoint unless told to
        overwrite it (``clear_previous_run`` removes the old run's files once the new run is ready
        to write); a marked folder whose run died before its first checkpoint is started again.
        Temporary files of a killed run go: while the lock is held, nobody else writes here."""
        try:
            self._created = not self.path.exists()
            self.path.mkdir(parents=True, exist_ok=True)
            if fresh:
                refuse_foreign(self.path)
            self.lock.acquire()
        except OSError as exc:
            raise TlcliError(f"cannot write to the run folder {self.path}: {exc.strerror or exc}") from None
        if fresh and self.holds_checkpoint() and not overwrite:
            self.close()
            raise TlcliError(f"{self.path} already holds a run: resume it with tlcli train --resume {self.path} (or the same command "
                             "with --resume auto), choose another run folder, or start it again with --overwrite")
        for name in (*RUN_FILES, MARKER):
            for temporary in self.path.glob(f".{name}.*"):
                temporary.unlink(missing_ok=True)
        return self

    def holds_checkpoint(self) -> bool:
        return self.last.is_file() or self.best.is_file()

    @property
    def run_id(self) -> str | None:
        return run_id(self.path)

    def clear_previous_run(self) -> None:
        """An overwritten (or never checkpointed) run's files go before the new run writes, so an
        interrupted new run never mixes with the old one; a new run that fails while preparing
        leaves the old one whole. Only tlcli's own files go (``marker``). The new run gets a new
        id, which its checkpoints record."""
        remove_run_files(self.path)
        mark(self.path)

    def adopt(self, identifier: str | None, *, kind: str = "run") -> None:
        """The run goes on here, unfinished until ``finish``: the marker keeps its id, or takes
        ``identifier`` (the id its checkpoints record) in a folder an older tlcli made."""
        mark(self.path, run_id(self.path) or identifier, kind=kind)

    def finish(self) -> None:
        mark(self.path, run_id(self.path), finished=True)

    def close(self) -> None:
        """Unlock, and remove ``.lock``: a ``.lock`` left behind marks a run that was killed.
        A folder this run created and never wrote to goes too (a run that failed before its first
        file leaves no empty folder among the runs)."""
        if self.lock.held:
            self.lock.release()
            if self._created:
                with contextlib.suppress(OSError):  # not empty: the run wrote something
                    self.path.rmdir()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def write_json(self, name: str, document: Any) -> Path:
        path = self.path / name
        write_file_atomically((json.dumps(document, indent=2, default=str) + "\n").encode(), path)
        return path
