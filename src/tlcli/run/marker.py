"""Which files in a run folder are tlcli's, and which run a folder and a checkpoint belong to.

tlcli deletes only what it wrote, known by name *and* by the marker ``.tlcli-run`` it writes into
every run folder it makes: a folder without the marker is the user's, and tlcli neither writes a
new run into it (unless it is empty) nor removes anything from it. The marker holds the run's id,
which every checkpoint of the run records too, so a checkpoint copied into another run's folder
is recognised as foreign there, while a run folder moved or renamed as a whole stays itself.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tlcli.core.version import __version__
from tlcli.core.errors import TlcliError
from tlcli.core.files import read_regular_file, write_file_atomically

MARKER = ".tlcli-run"
LOCK = ".lock"
# What a run writes; a kill mid-write leaves ".NAME.*" temporaries beside them.
RUN_FILES = ("best.pt", "last.pt", "history.csv", "curves.png", "log.txt", "config.json", "report.md", "report.html")
# What `evaluate` writes into eval-*/ inside a run, and TensorBoard's event files.
EVALUATION_FILES = ("confusion_matrix.png", "confusion_matrix_normalized.png", "confusion_matrix.csv", "metrics.json")
TENSORBOARD = "tensorboard"


def _marker(folder: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(read_regular_file(folder / MARKER, limit=4096, what="run marker"))
    except Exception:  # missing, unreadable or not ours: the folder is not vouched for
        return None
    return document if isinstance(document, dict) else None


def run_id(folder: Path) -> str | None:
    """The id in ``folder``'s marker; None where there is none (not tlcli's, or an older tlcli's)."""
    return (_marker(folder) or {}).get("run_id")


def is_finished(folder: Path) -> bool | None:
    """Whether the marked run in ``folder`` went through its finish (None: no marker to say)."""
    marker = _marker(folder)
    return None if marker is None else bool(marker.get("finished"))


def run_finished(folder: Path) -> bool:
    """Whether the folder's run ended through its finish: the marker says so (an older tlcli's
    folder has none to say otherwise), and no ``.lock`` was left behind by a kill after it."""
    return is_finished(folder) is not False and not (folder / LOCK).exists()


def is_marked(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def mark(folder: Path, identifier: str | None = None, *, finished: bool = False, kind: str = "run") -> str:
    """Write the marker (a new id unless one is given); returns the id. ``finished`` is set once
    the run has finished (its last epoch saved, curves drawn, ``latest`` pointed at it), so that
    a run stopped after its last checkpoint but before that is finished by its next resume.
    ``kind`` tells a run folder from a study's, so that neither takes the other's place."""
    identifier = identifier or uuid.uuid4().hex
    document = {"run_id": identifier, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "tlcli": __version__,
                "finished": finished, "kind": kind}
    write_file_atomically((json.dumps(document) + "\n").encode(), folder / MARKER)
    return identifier


def refuse_foreign(folder: Path, *, kind: str = "run", allow: str | None = None) -> None:
    """A new ``kind`` (run or study) goes only into a folder tlcli marked as one, an empty one, or
    one holding ``allow`` (an older tlcli's study, unmarked): never among the user's files."""
    marker = _marker(folder) or {}
    if marker.get("kind", "run") == kind and is_marked(folder):
        return
    entries = sorted(name for name in os.listdir(folder) if name != LOCK)
    if not entries or (allow and not is_marked(folder) and (folder / allow).is_file()):
        return
    what = f"a tlcli {marker['kind']} folder" if marker.get("kind") else f"not a tlcli {kind} folder"
    raise TlcliError(f"{folder} is {what} and is not empty ({len(entries)} entries, such as {entries[0]!r}): tlcli writes a new {kind} "
                     f"only into a new or empty folder, and never deletes what it did not write; choose another --out")


def remove_run_files(folder: Path) -> None:
    """tlcli's files of a marked folder's previous run, by name; whatever else is there stays."""
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    for evaluation in folder.glob("eval-*"):
        if evaluation.is_dir() and not evaluation.is_symlink():
            _remove_then_rmdir(evaluation, [evaluation / name for name in EVALUATION_FILES])
    board = folder / TENSORBOARD
    if board.is_dir() and not board.is_symlink():
        _remove_then_rmdir(board, [path for path in board.glob("events.out.tfevents.*") if path.is_file()])


def _remove_then_rmdir(folder: Path, files: list[Path]) -> None:
    for path in files:
        path.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:  # something of the user's is in it: it stays, and so does the folder
        pass


def checkpoint_run(folder: Path) -> dict[str, str]:
    """What a checkpoint records of the run it belongs to."""
    return {"id": run_id(folder) or "", "dir": str(folder.resolve())}


def foreign_checkpoint(path: Path, checkpoint: dict[str, Any]) -> str | None:
    """Why ``path`` is not vouched for as a checkpoint of the run in its own folder, or None.

    Vouched for: the folder's marker has the checkpoint's run id (a run folder moved as a whole),
    or the checkpoint was written in this very folder, or it records no run (an older tlcli's)."""
    recorded = checkpoint.get("run") or {}
    owner, here = recorded.get("id"), run_id(path.parent)
    if not owner or here == owner or recorded.get("dir") == str(path.parent.resolve()):
        return None
    whose = "another run's folder" if here else "a folder that is not its run's"
    return f"{path} is a checkpoint of the run in {recorded.get('dir')}, copied into {whose}"
