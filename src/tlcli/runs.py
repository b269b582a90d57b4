"""Run folders: where a run writes, the lock that keeps two runs out of one folder, and
finding a run or checkpoint again from what the user typed."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import re
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tlcli.errors import CheckpointError, TlcliError
from tlcli.files import write_error, write_file_atomically
from tlcli.plots import plot_curves, pyplot
from tlcli.run_files import LOCK, MARKER, RUN_FILES, mark, refuse_foreign, remove_run_files, run_id
from tlcli.stopping import deferred

LATEST = "latest"
# Drawing curves.png takes a quarter of a second; short epochs redraw it at most this often,
# and once more when the run ends.
CURVES_EVERY_S = 10.0
TENSORBOARD_SCALARS = {
    "loss/train": "train_loss", "loss/val": "val_loss", "accuracy/train": "train_acc", "accuracy/val": "val_acc", "lr": "lr",
}
HISTORY_FIELDS = ("phase", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s", "method",
                  "ema_val_loss", "ema_val_acc")
EPOCH_LINE = re.compile(r" phase (\d+) epoch (\d+): ")


def checkpoints_root() -> Path:
    """``$TLCLI_CHECKPOINTS_DIR``, else ``./checkpoints``."""
    return Path(os.environ.get("TLCLI_CHECKPOINTS_DIR", "checkpoints"))


def default_run_name(data: str, arch: str, suffix: str = "") -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{Path(data).name or data}-{arch.replace(':', '_')}{suffix}")
    return f"{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


class RunFolder:
    """A run's output folder, locked for as long as the run writes to it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock_handle = None
        self._scalars = None
        self._created = False  # open made the folder: close removes it if nothing was written

    last = property(lambda self: self.path / "last.pt")
    best = property(lambda self: self.path / "best.pt")
    curves = property(lambda self: self.path / "curves.png")

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
            handle = self._lock()
        except OSError as exc:
            raise TlcliError(f"cannot write to the run folder {self.path}: {exc.strerror or exc}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"tlcli pid {os.getpid()}")
        handle.flush()
        self._lock_handle = handle
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

    def in_use_by(self) -> str | None:
        """Who holds the folder's lock (a run still writing), or None; takes nothing."""
        try:
            with open(self.path / LOCK) as handle:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
                except OSError:
                    return handle.read().strip() or "another process"
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        except OSError:  # no lock file: nobody writes here
            pass
        return None

    def _lock(self):
        """The open, locked ``.lock`` file. ``close`` removes it before unlocking, so a file locked
        just as it was removed is let go, and the one now at ``.lock`` is locked instead."""
        while True:
            handle = open(self.path / LOCK, "a+")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise TlcliError(f"run folder {self.path} is in use by {holder}; wait for it or choose another run folder") from None
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path / LOCK).st_ino == os.fstat(handle.fileno()).st_ino:
                    return handle
            handle.close()

    def clear_previous_run(self) -> None:
        """An overwritten (or never checkpointed) run's files go before the new run writes, so an
        interrupted new run never mixes with the old one; a new run that fails while preparing
        leaves the old one whole. Only tlcli's own files go (``run_files``). The new run gets a new
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
        if self._lock_handle is not None:
            (self.path / LOCK).unlink(missing_ok=True)
            fcntl.flock(self._lock_handle.fileno(), fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None
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

    def write_history(self, history: list[dict]) -> Path:
        path = self.path / "history.csv"
        table = io.StringIO(newline="")
        writer = csv.DictWriter(table, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
        write_file_atomically(table.getvalue().encode(), path)
        return path

    def begin_epochs(self, *, title: str, tensorboard: bool) -> None:
        """Before the first epoch: the curves' title, TensorBoard if asked, and matplotlib
        imported in the background (1.5 s) while the first epochs run."""
        self._title, self._plotted = title, time.monotonic()
        self._scalars = _summary_writer(self.path) if tensorboard else None
        threading.Thread(target=pyplot, daemon=True).start()

    @deferred()
    def write_epoch(self, history: list[dict], *, is_best: bool) -> None:
        """After each epoch's checkpoint: history.csv, the log line, TensorBoard scalars, and
        curves.png at most every CURVES_EVERY_S (short epochs would spend their time drawing).
        A termination signal waits for the end: an import of matplotlib cut in half breaks it."""
        self.write_history(history)
        if time.monotonic() - self._plotted >= CURVES_EVERY_S:
            plot_curves(history, self.curves, title=self._title)
            self._plotted = time.monotonic()
        row = history[-1]
        if self._scalars is not None:
            for tag, key in TENSORBOARD_SCALARS.items():
                self._scalars.add_scalar(tag, row[key], row["epoch"])
            self._scalars.flush()
        self.log(_epoch_line(row, is_best=is_best))

    def restore(self, history: list[dict], *, phase: int, best_epoch: int) -> list[int]:
        """Bring history.csv and log.txt up to a checkpoint's ``history`` after a kill: the
        table is rewritten, and the log gets the lines of this phase's epochs it lacks (``best_epoch``
        numbered as the history numbers them). Returns the epochs added to the log."""
        self.write_history(history)
        log = self.path / "log.txt"
        logged = {(int(p), int(e)) for p, e in EPOCH_LINE.findall(log.read_text() if log.exists() else "")}
        missing = [row for row in history if row["phase"] == phase and (phase, row["epoch"]) not in logged]
        for row in missing:
            self.log(_epoch_line(row, is_best=row["epoch"] == best_epoch) + ", recovered from the checkpoint")
        return [row["epoch"] for row in missing]

    @deferred()
    def end_epochs(self, history: list[dict]) -> None:
        """The last drawing of the curves (also after an interrupt), and TensorBoard closed."""
        if history:
            plot_curves(history, self.curves, title=self._title)
        if self._scalars is not None:
            self._scalars.close()
            self._scalars = None

    def log(self, line: str) -> None:
        try:
            with open(self.path / "log.txt", "a") as stream:
                stream.write(f"{datetime.now().isoformat(timespec='seconds')} {line}\n")
        except OSError as exc:
            raise write_error(self.path / "log.txt", exc) from None

    def point_latest(self) -> None:
        """``checkpoints/latest`` -> this run, wherever ``--out`` put it: relative for a run
        under checkpoints/ (the folder can move), else absolute. Replaced atomically; the
        temporary link's name is fixed, so the next run replaces one that a kill left behind."""
        root = checkpoints_root()
        link, temporary = root / LATEST, root / f".{LATEST}.tmp"
        run, base = self.path.resolve(), root.resolve()
        try:
            root.mkdir(parents=True, exist_ok=True)
            if temporary.is_symlink() or temporary.exists():
                temporary.unlink()
            temporary.symlink_to(os.path.relpath(run, base) if run.is_relative_to(base) else run)
            os.replace(temporary, link)
        except OSError:
            pass  # a file system without symlinks still has the run; only the shortcut is missing


def _epoch_line(row: dict, *, is_best: bool) -> str:
    return (f"phase {row['phase']} epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}, "
            f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}, "
            + (f"moving average's val loss {row['ema_val_loss']:.4f} acc {row['ema_val_acc']:.4f}, " if "ema_val_acc" in row else "")
            + f"lr {row['lr']:.3g}, {row['seconds']:.1f} s"
            + (" (best)" if is_best else ""))


def _summary_writer(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TlcliError("TensorBoard logging needs the tensorboard package: pip install 'tlcli[tensorboard]'") from None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def resolve_checkpoint(spec: str | None, *, prefer: str = "best.pt") -> Path:
    """A checkpoint file from a path, a run folder, a run name under checkpoints/, or nothing (latest)."""
    root = checkpoints_root()
    latest = root / LATEST
    # Name the run the pointer points at, so messages and outputs show the real folder.
    candidates = [Path(spec), root / spec] if spec else [root / os.readlink(latest) if latest.is_symlink() else latest]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
        if candidate.is_dir():
            for name in (prefer, "best.pt", "last.pt"):
                if (candidate / name).is_file():
                    return candidate / name
            raise CheckpointError(f"run folder {candidate} holds no best.pt or last.pt")
    if not spec:
        raise CheckpointError(f"no run yet in {root}/: train one first, or name a checkpoint")
    raise CheckpointError(f"no checkpoint or run '{spec}' (looked for a file, a run folder, and {root / spec})")
