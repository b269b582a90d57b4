"""Making a killed run's folder whole again before it resumes: the checkpoints are the truth.

A kill can leave temporary files (``RunFolder.open`` removes them), best.pt one save ahead of
last.pt, no last.pt at all (a kill during the first save), and history.csv and log.txt behind
the checkpoint; ``recover`` mends each from the checkpoints, and logs what it did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tlcli.run.checkpoint import load_checkpoint
from tlcli.core.files import link_or_copy
from tlcli.run.marker import run_finished
from tlcli.run.folder import RunFolder
from tlcli.run.record import EpochRecord, epoch_line


def resumable(path: Path) -> tuple[Path, Path | None]:
    """The checkpoint to resume from, and the missing last.pt it stands in for: best.pt is
    written first, so a kill during a run's first save can leave it alone in the folder."""
    best = path.with_name("best.pt")
    if path.name == "last.pt" and not path.exists() and best.is_file():
        return best, path
    return path, None


def recover(path: Path, checkpoint: dict[str, Any], notes: list[str]) -> tuple[dict[str, Any], list[str], bool]:
    """A kill can leave a run folder with temporary files (``RunFolder.open`` removes them), best.pt
    ahead of last.pt, and history.csv and log.txt behind the checkpoint. The checkpoints are the
    truth: the rest is rewritten from them. Returns the checkpoint to resume from, ``notes`` and
    what was repaired (all logged), and whether the folder's previous run finished."""
    finished = run_finished(path.parent)
    with RunFolder(path.parent).open(fresh=False) as folder:
        checkpoint, repaired = _reconcile_best_and_last(folder, checkpoint) if path.name == "last.pt" else (checkpoint, [])
        notes = [*notes, *repaired]
        progress, history = checkpoint["progress"], checkpoint["history"]
        best_row = len(history) - progress["epoch"] + progress["best_epoch"]  # in the history's numbering, which spans phases
        logged = restore_record(folder.record, history, phase=checkpoint["phase"], best_epoch=best_row)
        if logged:
            notes.append(f"log.txt lacked epoch {', '.join(map(str, logged))}; it and history.csv are rewritten from the checkpoint")
        for note in notes:
            folder.record.log(note)
        return checkpoint, notes, finished


def restore_record(record: EpochRecord, history: list[dict], *, phase: int, best_epoch: int) -> list[int]:
    """Bring history.csv and log.txt up to a checkpoint's ``history`` after a kill: the table is
    rewritten, and the log gets the lines of this phase's epochs it lacks (``best_epoch`` numbered
    as the history numbers them). Returns the epochs added to the log."""
    record.write_history(history)
    logged = record.logged_epochs()
    missing = [row for row in history if row["phase"] == phase and (phase, row["epoch"]) not in logged]
    for row in missing:
        record.log(epoch_line(row, is_best=row["epoch"] == best_epoch) + ", recovered from the checkpoint")
    return [row["epoch"] for row in missing]


def _reconcile_best_and_last(folder: RunFolder, last: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """best.pt is written before last.pt, so a kill between the two leaves best.pt, a whole
    checkpoint, one epoch ahead: it becomes last.pt. Older tlcli versions wrote last.pt first, so
    their kills left last.pt naming itself the best epoch and best.pt an older one: last.pt
    becomes best.pt."""
    best = load_checkpoint(folder.best) if folder.best.is_file() else None
    epoch = last["progress"]["epoch"]
    if best is not None and best["progress"]["epoch"] > epoch:
        link_or_copy(folder.best, folder.last)
        return best, [f"last.pt was one save behind best.pt (a kill between the two): it is now best.pt's epoch {best['progress']['epoch']}"]
    if last["progress"]["best_epoch"] == epoch and (best is None or best["progress"]["epoch"] != epoch):
        link_or_copy(folder.last, folder.best)
        return last, [f"best.pt did not hold epoch {epoch}, the best epoch last.pt records: it is now a copy of last.pt"]
    return last, []
