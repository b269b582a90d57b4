"""Training progress on stderr: a live bar on a terminal or in a notebook (Rich renders there),
plain time-stamped lines in logs and cron mails; nothing at all when asked for none."""

from __future__ import annotations

import math
import sys
import time
import warnings
from datetime import datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tlcli.engine.observer import Observer

# file=None (stderr) is looked up at each write, so redirection works. Off a terminal Rich assumes
# 80 columns; logs and pipes get room for full paths instead. No markup: every string shown is
# the user's or tlcli's, printed as it is.
PIPE_WIDTH = 200
console = Console(stderr=True, soft_wrap=True, highlight=False, markup=False, width=None if sys.stderr.isatty() else PIPE_WIDTH)

# Off a terminal, work before the epochs reports how far it got this often (a cron log shows
# a long decode moving without a line per batch).
PLAIN_PROGRESS_EVERY_S = 10.0


def _stamped(text: str) -> str:
    """As log.txt writes its lines, so a cron log and the run's log line up."""
    return f"{datetime.now().isoformat(timespec='seconds')} {text}"


def _epoch_line(row: dict) -> str:
    val = "" if math.isnan(row["val_loss"]) else f"  val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}"
    return (
        f"phase {row['phase']} epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}"
        f"{val}  lr {row['lr']:.3g}  {row['seconds']:.1f} s  {row['images_per_s']:.0f} img/s"
    )


class LineObserver(Observer):
    """For logs and cron: nothing animated, one time-stamped line per epoch."""

    def __init__(self) -> None:
        self._started: dict[str, tuple[float, float]] = {}  # what -> (start, last line), monotonic

    def epoch_end(self, row: dict) -> None:
        console.print(_stamped(_epoch_line(row)))

    def warning(self, text: str) -> None:
        console.print(f"Warning: {text}")

    def info(self, text: str) -> None:
        console.print(text)

    def rate(self, what: str, done: int) -> float:
        """``done`` per second since ``what`` began."""
        elapsed = time.monotonic() - self._started.setdefault(what, (time.monotonic(), time.monotonic()))[0]
        return done / elapsed if elapsed > 0 else 0.0

    def prepare(self, what: str, done: int, total: int, unit: str = "img") -> None:
        rate = self.rate(what, done)
        started, shown = self._started[what]
        if done >= total:
            del self._started[what]
            console.print(_stamped(f"{what}: {done} {unit} in {time.monotonic() - started:.1f} s ({rate:.0f} {unit}/s)"))
        elif time.monotonic() - shown >= PLAIN_PROGRESS_EVERY_S:
            self._started[what] = (started, time.monotonic())
            console.print(_stamped(f"{what}: {done}/{total} {unit} ({rate:.0f} {unit}/s)"))


class BarObserver(LineObserver):
    """For a terminal: a progress bar per epoch with loss, accuracy, speed and ETA, and one per
    piece of work before the epochs with its count and speed."""

    def __init__(self) -> None:
        super().__init__()
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task = None
        self.preparing: dict[str, int] = {}

    def prepare(self, what: str, done: int, total: int, unit: str = "img") -> None:
        if what not in self.preparing:
            self.bar.start()
            self.preparing[what] = self.bar.add_task(what, total=total, detail="")
        self.bar.update(self.preparing[what], completed=done, detail=f"{unit}, {self.rate(what, done):.0f} {unit}/s")
        if done >= total:
            self.bar.refresh()  # work shorter than a refresh tick still shows its count and speed
            self.bar.remove_task(self.preparing.pop(what))
            self.bar.stop()
            super().prepare(what, done, total, unit)

    def epoch_start(self, phase: int, epoch: int, epochs: int, batches: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task(f"phase {phase} epoch {epoch}/{epochs}", total=batches, detail="")

    def batch_end(self, done: int, loss: float, accuracy: float, images_per_s: float) -> None:
        self.bar.update(self.task, completed=done, detail=f"loss {loss:.4f} acc {accuracy:.3f} {images_per_s:.0f} img/s")

    def epoch_end(self, row: dict) -> None:
        self.bar.remove_task(self.task)
        self.bar.stop()
        super().epoch_end(row)

    def close(self) -> None:
        self.bar.stop()  # after Ctrl-C mid-epoch the terminal gets its cursor back


class QuietObserver(Observer):
    """progress=False: no output, but warnings still reach Python's warnings machinery."""

    def warning(self, text: str) -> None:
        warnings.warn(text, stacklevel=2)


def make_observer(show: bool = True) -> Observer:
    """Under torchrun, only rank 0 reports: the others' progress is the same."""
    from tlcli.engine.distributed import is_main_process

    if not show:
        return QuietObserver()
    if not is_main_process():
        return Observer()
    return BarObserver() if console.is_terminal or console.is_jupyter else LineObserver()
