"""Reading back a results file for ``--resume``: which images it holds, and where it is cut.

A row counts only if writing it again gives back exactly its bytes, so a file another tool
wrote (or a row torn inside a quoted field) is never taken for tlcli's; only the last row may be
torn. The images are counted a whole batch at a time: those after the file's last whole batch
are predicted again, so that the batches that follow hold the same images as an uninterrupted
run's (a batch's composition can change a probability's last digit).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from tlcli.core.errors import TlcliError
from tlcli.prediction.results import CSV_HEADER, csv_text, json_line


@dataclass
class Scan:
    done: Counter = field(default_factory=Counter)  # image names of the whole batches, with their counts
    kept: int = 0  # the offset where the whole batches end
    failed: int = 0  # error rows among them
    pending: list = field(default_factory=list)  # (name, failed) of the batch being read

    def add(self, name: str, end: int, failed: bool, batch_size: int) -> None:
        self.pending.append((name, failed))
        if len(self.pending) == batch_size:
            self.done.update(name for name, _ in self.pending)
            self.failed += sum(failed for _, failed in self.pending)
            self.pending, self.kept = [], end


def refusal(path: Path, why: str) -> TlcliError:
    return TlcliError(f"{path} {why}; --resume continues only a file tlcli predict wrote, in the same format and --topk")


def _csv_records(stream: BinaryIO, start: int) -> Iterator[tuple[list[str], str, int]]:
    """(record, the text it was read from, offset after it)."""
    state = {"end": start, "lines": []}

    def lines() -> Iterator[str]:
        for raw in stream:
            state["end"] += len(raw)
            state["lines"].append(raw.decode("utf-8", errors="surrogateescape"))
            yield state["lines"][-1]

    for record in csv.reader(lines()):
        text, state["lines"] = "".join(state["lines"]), []
        yield record, text, state["end"]


def scan_csv(stream: BinaryIO, path: Path, size: int, topk: int, batch_size: int) -> Scan:
    """An image is ``topk`` rows ranked 1 to ``topk``, or one row with its error."""
    header = csv_text([CSV_HEADER]).encode()
    first = stream.readline()
    if first != header:
        if header.startswith(first) and len(first) == size:  # the header itself torn
            return Scan()
        raise refusal(path, "does not start with tlcli's CSV header (path,rank,label,probability,error)")
    scan = Scan(kept=len(first))
    name, rows = None, 0  # the image being read and its rows so far
    for record, text, end in _csv_records(stream, len(first)):
        if len(record) != 5 or csv_text([record]) != text:
            if end == size and (not text.endswith("\n") or text.count('"') % 2):
                break  # the torn last row: cut inside a line, or inside a quoted field
            raise refusal(path, f"has a row tlcli did not write, before byte {end}")
        path_field, rank, _, _, error = record
        if rank == "" and error and name is None:
            scan.add(path_field, end, True, batch_size)
            continue
        if rank != str(rows + 1) or (name is not None and path_field != name):
            raise refusal(path, f"holds another number of rows per image than --topk {topk} writes, near byte {end}")
        name, rows = path_field, rows + 1
        if rows == topk:
            scan.add(name, end, False, batch_size)
            name, rows = None, 0
    return scan


def scan_jsonl(stream: BinaryIO, path: Path, size: int, topk: int, batch_size: int) -> Scan:
    """An image is one line: its path, ``topk`` predictions or its error."""
    scan, end = Scan(), 0
    for number, raw in enumerate(stream, start=1):
        end += len(raw)
        text = raw.decode("utf-8", errors="surrogateescape")
        try:
            entry = json.loads(text)
        except ValueError:
            entry = None
        whole = isinstance(entry, dict) and list(entry) == ["path", "predictions", "error"] and json_line(entry) == text
        if not whole:
            start = '{"path": '
            if end == size and not text.endswith("\n") and (text.startswith(start) or start.startswith(text)):
                break  # the torn last line
            raise refusal(path, f"line {number} is not a prediction tlcli wrote")
        if entry["error"] is None and len(entry["predictions"]) != topk:
            raise refusal(path, f"line {number} holds {len(entry['predictions'])} predictions where --topk {topk} writes {topk}")
        scan.add(entry["path"], end, entry["error"] is not None, batch_size)
    return scan
