"""``predict --output FILE`` and ``--resume``: a results file that a killed job continues.

Batches are appended whole (one ``write`` each), so a job killed between writes leaves whole
rows; a SIGKILL inside a write can leave a torn last row. ``--resume`` keeps the file's whole
batches and cuts the rest (only after the file has shown it is a tlcli results file: a user's
other file is never changed); their images are skipped, each as many times as the file holds
it, so that a resumed run's file equals an uninterrupted one's byte for byte when the inputs and
the batch size are unchanged.
"""

from __future__ import annotations

import csv
import json
import os
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from tlcli.errors import TlcliError
from tlcli.prediction.results import STREAMED, header


@dataclass
class ResultsFile:
    path: Path
    descriptor: int
    done: Counter = field(default_factory=Counter)  # image names already in the file, with their counts
    cut: int = 0  # bytes cut from the end: a torn row and the images after the last whole batch

    def write(self, text: str) -> None:
        data = memoryview(text.encode("utf-8", errors="surrogateescape"))
        try:
            while data:
                data = data[os.write(self.descriptor, data):]
        except OSError as exc:  # a full disk, a FIFO's reader gone
            raise TlcliError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        os.close(self.descriptor)


class _WholeBatches:
    """The images read so far, counted as done a whole batch at a time: the images after the last
    whole batch are predicted again, so the batches that follow hold the same images as an
    uninterrupted run's (a batch's composition can change a probability's last digit)."""

    def __init__(self, batch_size: int, start: int):
        self.batch_size, self.kept, self.done, self.pending = batch_size, start, Counter(), []

    def add(self, name: str, end: int) -> None:
        self.pending.append(name)
        if len(self.pending) == self.batch_size:
            self.done.update(self.pending)
            self.pending, self.kept = [], end


def _refuse(path: Path, why: str) -> TlcliError:
    return TlcliError(f"{path} {why}; --resume continues only a file tlcli predict wrote, in the same format")


def _csv_records(stream: BinaryIO, start: int) -> Iterator[tuple[list[str], int, bool]]:
    """(record, offset after it, whether its last line was whole): offsets let a torn row be cut."""
    state = {"end": start, "whole": True}

    def lines() -> Iterator[str]:
        for raw in stream:
            state["end"] += len(raw)
            state["whole"] = raw.endswith(b"\n")
            yield raw.decode("utf-8", errors="surrogateescape")

    reader = csv.reader(lines())
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error:  # an open quote at the end (a torn row), or a NUL byte
            yield [], state["end"], False
            return
        yield record, state["end"], state["whole"]


def _scan_csv(stream: BinaryIO, path: Path, size: int, topk: int, batch_size: int) -> tuple[Counter, int]:
    """The images of the file's whole batches, and the offset where they end. An image is
    ``topk`` rows ranked 1 to ``topk``, or one row with its error."""
    expected_header = header("csv").encode()
    first = stream.readline()
    if first != expected_header:
        if expected_header.startswith(first) and len(first) == size:  # the header itself torn
            return Counter(), 0
        raise _refuse(path, "does not start with tlcli's CSV header (path,rank,label,probability,error)")
    batches = _WholeBatches(batch_size, len(first))
    name, rows = None, 0  # the image being read and its rows so far
    for record, end, whole in _csv_records(stream, len(first)):
        if not whole:
            if end < size:
                raise _refuse(path, f"has a malformed row before byte {end}")
            break
        if len(record) != 5:
            raise _refuse(path, f"has a row of {len(record)} fields where tlcli writes 5")
        path_field, rank, _, _, error = record
        if rank == "" and error and name is None:
            batches.add(path_field, end)
            continue
        if rank != str(rows + 1) or (name is not None and path_field != name):
            raise _refuse(path, f"holds another number of rows per image than --topk {topk} writes near byte {end} "
                                "(resume with the first run's --topk)")
        name, rows = path_field, rows + 1
        if rows == topk:
            batches.add(name, end)
            name, rows = None, 0
    return batches.done, batches.kept


def _scan_jsonl(stream: BinaryIO, path: Path, batch_size: int) -> tuple[Counter, int]:
    batches = _WholeBatches(batch_size, 0)
    end = 0
    for number, raw in enumerate(stream, start=1):
        if not raw.endswith(b"\n"):
            break  # the torn last line
        try:
            entry = json.loads(raw)
        except ValueError:
            raise _refuse(path, f"line {number} is not JSON") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise _refuse(path, f"line {number} is not a prediction (no \"path\")")
        end += len(raw)
        batches.add(entry["path"], end)
    return batches.done, batches.kept


def _open_new(path: Path, format: str) -> ResultsFile:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as exc:
        raise TlcliError(f"cannot write {path}: {exc.strerror or exc}") from None
    results = ResultsFile(path, descriptor)
    results.write(header(format))
    return results


def _open_other(path: Path) -> ResultsFile:
    """A FIFO or a device (/dev/stdout, /dev/null): written to, never checked or cut."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:  # ENXIO: a FIFO nobody reads, which would block forever
        raise TlcliError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.set_blocking(descriptor, True)
    return ResultsFile(path, descriptor)


def open_results(path: Path, format: str, *, resume: bool, topk: int, batch_size: int) -> ResultsFile:
    """The file the predictions of ``format`` go to; with ``resume``, what it holds already."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return _open_new(path, format)
    except OSError as exc:
        raise TlcliError(f"cannot write {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise TlcliError(f"{path} is a folder; --output takes a file")
    if not stat.S_ISREG(info.st_mode):
        if resume:
            raise TlcliError(f"{path} is not a regular file: --resume needs a file it can read back")
        return _open_other(path)
    if info.st_size == 0:
        return _open_new(path, format)
    if not resume:
        raise TlcliError(f"{path} already exists: add --resume to continue it, or remove it first")
    if format not in STREAMED:
        raise TlcliError(f"--resume continues --csv or --jsonl files, not --{format}")
    with open(path, "rb") as stream:
        done, kept = (_scan_csv(stream, path, info.st_size, topk, batch_size) if format == "csv"
                       else _scan_jsonl(stream, path, batch_size))
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.truncate(descriptor, kept) if kept < info.st_size else None
    except OSError as exc:
        raise TlcliError(f"cannot write {path}: {exc.strerror or exc}") from None
    results = ResultsFile(path, descriptor, done, info.st_size - kept)
    if kept == 0:
        results.write(header(format))
    return results
