"""A run's record of its epochs, for people and tools: history.csv, log.txt, curves.png and
TensorBoard's scalars."""

from __future__ import annotations

import csv
import io
import re
import threading
import time
from datetime import datetime
from pathlib import Path

from tlcli.core.errors import TlcliError
from tlcli.core.files import write_error, write_file_atomically
from tlcli.core.plots import plot_curves, pyplot
from tlcli.core.stopping import deferred

# Drawing curves.png takes a quarter of a second; short epochs redraw it at most this often,
# and once more when the run ends.
CURVES_EVERY_S = 10.0
TENSORBOARD_SCALARS = {
    "loss/train": "train_loss", "loss/val": "val_loss", "accuracy/train": "train_acc", "accuracy/val": "val_acc", "lr": "lr",
}
HISTORY_FIELDS = ("phase", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s", "method",
                  "ema_val_loss", "ema_val_acc")
EPOCH_LINE = re.compile(r" phase (\d+) epoch (\d+): ")


class EpochRecord:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir)
        self._scalars = None
        self._title, self._plotted = "", 0.0

    curves = property(lambda self: self.path / "curves.png")

    def write_history(self, history: list[dict]) -> Path:
        path = self.path / "history.csv"
        table = io.StringIO(newline="")
        writer = csv.DictWriter(table, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
        write_file_atomically(table.getvalue().encode(), path)
        return path

    def begin(self, *, title: str, tensorboard: bool) -> None:
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
        self.log(epoch_line(row, is_best=is_best))

    @deferred()
    def end(self, history: list[dict]) -> None:
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

    def logged_epochs(self) -> set[tuple[int, int]]:
        """(phase, epoch) of every epoch line in log.txt."""
        log = self.path / "log.txt"
        return {(int(p), int(e)) for p, e in EPOCH_LINE.findall(log.read_text() if log.exists() else "")}


def epoch_line(row: dict, *, is_best: bool) -> str:
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
