"""``predict --output FILE`` and ``--resume``: a results file that a killed job continues.

Batches are appended whole (one ``write`` each), so a job killed between writes leaves whole
rows; a SIGKILL inside a write can leave a torn last row. ``--resume`` keeps the file's whole
batches and cuts the rest (``resume_scan``, only once the file has shown it is a tlcli results
file: a user's other file is never changed); their images are skipped, each as many times as
the file holds it, so that a resumed run's file equals an uninterrupted one's byte for byte when
the inputs and the batch size are unchanged. A lock keeps a second job off the file.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tlcli.core.errors import TlcliError
from tlcli.prediction.resume_scan import scan_csv, scan_jsonl
from tlcli.prediction.results import STREAMED, header


@dataclass
class ResultsFile:
    path: Path
    descriptor: int
    done: Counter = field(default_factory=Counter)  # image names already in the file, with their counts
    failed: int = 0  # error rows among them
    cut: int = 0  # bytes cut from the end: a torn row and the images after the last whole batch
    regular: bool = True  # a FIFO or a device is written to, never read back

    def write(self, text: str) -> None:
        data = memoryview(text.encode("utf-8", errors="surrogateescape"))
        try:
            while data:
                data = data[os.write(self.descriptor, data):]
        except OSError as exc:  # a full disk, a FIFO's reader gone
            raise TlcliError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        os.close(self.descriptor)


def _failure(path: Path, exc: OSError) -> TlcliError:
    return TlcliError(f"cannot write {path}: {exc.strerror or exc}")


def check_output(path: Path, format: str, *, resume: bool) -> None:
    """What can be refused before any image is read or model loaded."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _failure(path, exc) from None
    if stat.S_ISDIR(info.st_mode):
        raise TlcliError(f"{path} is a folder; --output takes a file")
    if stat.S_ISREG(info.st_mode) and info.st_size and not resume:
        raise TlcliError(f"{path} already exists: add --resume to continue it, or remove it first")
    if resume and not stat.S_ISREG(info.st_mode):
        raise TlcliError(f"{path} is not a regular file: --resume needs a file it can read back")
    if resume and format not in STREAMED:
        raise TlcliError(f"--resume continues --csv or --jsonl files, not --{format}")


def _locked(path: Path, flags: int) -> int:
    try:
        descriptor = os.open(path, flags, 0o644)
    except OSError as exc:  # ENXIO: a FIFO nobody reads, which would block forever
        raise _failure(path, exc) from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        raise TlcliError(f"{path} is being written by another tlcli predict; let it finish (or stop it) first") from None
    return descriptor


def open_results(path: Path, format: str, *, resume: bool, topk: int, batch_size: int) -> ResultsFile:
    """The file the predictions of ``format`` go to, its header written; with ``resume``, what it
    holds already."""
    check_output(path, format, resume=resume)
    if path.exists() and not path.is_file():  # a FIFO or a device (/dev/stdout, /dev/null)
        descriptor = _locked(path, os.O_WRONLY | os.O_NONBLOCK)
        os.set_blocking(descriptor, True)
        results = ResultsFile(path, descriptor, regular=False)
    else:
        results = ResultsFile(path, _locked(path, os.O_WRONLY | os.O_CREAT))
    try:
        size = kept = os.fstat(results.descriptor).st_size if results.regular else 0
        if size:
            with open(path, "rb") as stream:
                scan = (scan_csv if format == "csv" else scan_jsonl)(stream, path, size, topk, batch_size)
            results.done, results.failed, results.cut, kept = scan.done, scan.failed, size - scan.kept, scan.kept
            os.ftruncate(results.descriptor, kept)
            os.lseek(results.descriptor, kept, os.SEEK_SET)
        if kept == 0:
            results.write(header(format))
    except OSError as exc:
        results.close()
        raise _failure(path, exc) from None
    except TlcliError:
        results.close()
        raise
    return results
