"""Predictions and the formats they stream in: CSV, JSON lines and a JSON array.

Each batch becomes one piece of text, written with one ``write`` and flushed, so that a reader
(or a job killed between batches) sees whole rows. CSV has ``top-k`` rows per image (rank 1
first) or one row with the error; JSON lines one object per image.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

CSV_HEADER = ["path", "rank", "label", "probability", "error"]
FORMATS = ("table", "csv", "jsonl", "json")
STREAMED = ("csv", "jsonl")  # the formats a file can be resumed in


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (class, probability), most likely first; empty on error
    error: str | None = None

    @property
    def label(self) -> str | None:
        """The most likely class; None for an unreadable image."""
        return self.top[0][0] if self.top else None

    @property
    def probability(self) -> float | None:
        return self.top[0][1] if self.top else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "predictions": [{"label": label, "probability": p} for label, p in self.top],
            "error": self.error,
        }


def top_classes(probabilities, classes: list[str], k: int) -> list[list[tuple[str, float]]]:
    """Each row of ``probabilities``' ``k`` most likely (class, probability) pairs, most likely first."""
    values, indices = probabilities.topk(min(k, len(classes)), dim=1)
    return [[(classes[int(i)], float(v)) for v, i in zip(row_values, row_indices)] for row_values, row_indices in zip(values, indices)]


def csv_rows(predictions: Iterable[Prediction]) -> list[list[str]]:
    rows = []
    for p in predictions:
        rows += [[p.path, str(rank), label, f"{prob:.6f}", ""] for rank, (label, prob) in enumerate(p.top, start=1)]
        if p.error:
            rows.append([p.path, "", "", "", p.error])
    return rows


def csv_text(rows: Iterable[Iterable[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


_UNDECODABLE = re.compile("[\udc80-\udcff]")  # a file name's bytes that are not UTF-8 (surrogateescape)


def _json(document: dict[str, Any]) -> str:
    """JSON that stays valid UTF-8 whatever the file names: their undecodable bytes as \\udcXX
    escapes, which json.loads turns back into the same surrogates."""
    return _UNDECODABLE.sub(lambda match: f"\\u{ord(match.group()):04x}", json.dumps(document, ensure_ascii=False))


def json_line(document: dict[str, Any]) -> str:
    return _json(document) + "\n"


def header(format: str) -> str:
    return {"csv": csv_text([CSV_HEADER]), "json": "["}.get(format, "")


def batch_text(format: str, predictions: list[Prediction], *, first: bool) -> str:
    """The text of one batch; ``first`` tells the JSON array whether a comma goes before it."""
    if format == "csv":
        return csv_text(csv_rows(predictions))
    if format == "jsonl":
        return "".join(json_line(p.to_dict()) for p in predictions)
    return ("\n" if first else ",\n") + ",\n".join(_json(p.to_dict()) for p in predictions)


def footer(format: str) -> str:
    return "\n]\n" if format == "json" else ""
