"""Training progress on stderr: a live bar on a terminal, one plain line per epoch otherwise."""

from __future__ import annotations

import math

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tlcli.cli import output
from tlcli.engine.observer import Observer


def _epoch_line(row: dict) -> str:
    val = "" if math.isnan(row["val_loss"]) else f"  val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}"
    return (
        f"phase {row['phase']} epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}"
        f"{val}  lr {row['lr']:.3g}  {row['seconds']:.1f} s  {row['images_per_s']:.0f} img/s"
    )


class LineObserver(Observer):
    """For logs and cron: nothing animated, one line per epoch."""

    def epoch_end(self, row: dict) -> None:
        output.info(_epoch_line(row))

    def warning(self, text: str) -> None:
        output.warn(text)

    def info(self, text: str) -> None:
        output.info(text)

    def prepare(self, what: str, done: int, total: int) -> None:
        if done == total:
            output.info(f"{what}: done")


class BarObserver(LineObserver):
    """For a terminal: a progress bar per epoch with loss, accuracy, speed and ETA."""

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.3f} {task.fields[speed]:.0f} img/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=output.err,
            transient=True,
        )
        self.task = None
        self.preparing: dict[str, int] = {}

    def prepare(self, what: str, done: int, total: int) -> None:
        if what not in self.preparing:
            self.bar.start()
            self.preparing[what] = self.bar.add_task(what, total=total, loss=0.0, acc=0.0, speed=0.0)
        self.bar.update(self.preparing[what], completed=done)
        if done == total:
            self.bar.remove_task(self.preparing.pop(what))
            self.bar.stop()
            super().prepare(what, done, total)

    def epoch_start(self, phase: int, epoch: int, epochs: int, batches: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task(f"phase {phase} epoch {epoch}/{epochs}", total=batches, loss=0.0, acc=0.0, speed=0.0)

    def batch_end(self, done: int, loss: float, accuracy: float, images_per_s: float) -> None:
        self.bar.update(self.task, completed=done, loss=loss, acc=accuracy, speed=images_per_s)

    def epoch_end(self, row: dict) -> None:
        self.bar.remove_task(self.task)
        self.bar.stop()
        super().epoch_end(row)

    def close(self) -> None:
        self.bar.stop()  # after Ctrl-C mid-epoch the terminal gets its cursor back


def make_observer() -> Observer:
    """Under torchrun, only rank 0 reports: the others' progress is the same."""
    from tlcli.engine.distributed import is_main_process

    if not is_main_process():
        return Observer()
    return BarObserver() if output.err.is_terminal else LineObserver()
