"""``tlcli.prediction.resume_scan``: reading back a results file for ``--resume``: which images
its whole batches hold (with their counts and errors), the offset where those batches end (a torn
row and a partial batch are cut), and the refusal of a file tlcli did not write or wrote with
another ``--topk``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tlcli.core.errors import TlcliError
from tlcli.prediction.results import Prediction, batch_text, header
from tlcli.prediction.resume_scan import Scan, scan_csv, scan_jsonl

TOPK = 2
SCANS = {"csv": scan_csv, "jsonl": scan_jsonl}


def _image(name: str) -> Prediction:
    return Prediction(name, [("dog", 0.75), ("cat", 0.25)])


def _failed(name: str) -> Prediction:
    return Prediction(name, [], "not an image PIL can read")


# Batches of two, as predict --batch-size 2 writes them; the last batch is cut short.
BATCHES = [[_image("a.png"), _failed("bad.png")], [_image('odd, "name".png'), _image("a.png")], [_image("late.png")]]


def _write(tmp_path: Path, format: str, text: str | bytes) -> Path:
    path = tmp_path / f"results.{format}"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _text(format: str, batches) -> str:
    return header(format) + "".join(batch_text(format, batch, first=False) for batch in batches)


def _scan(path: Path, format: str, *, topk: int = TOPK, batch_size: int = 2) -> Scan:
    with open(path, "rb") as stream:
        return SCANS[format](stream, path, path.stat().st_size, topk, batch_size)


@pytest.mark.parametrize("format", ["csv", "jsonl"])
def test_the_whole_batches_are_counted_and_the_partial_one_cut(tmp_path, format):
    path = _write(tmp_path, format, _text(format, BATCHES))

    scan = _scan(path, format)

    # a.png is in the file twice, so a resumed run skips it twice.
    assert scan.done == Counter({"a.png": 2, "bad.png": 1, 'odd, "name".png': 1})
    assert scan.failed == 1
    assert scan.kept == len(_text(format, BATCHES[:2]).encode())
    assert scan.pending == [("late.png", False)]  # read, but not part of a whole batch


@pytest.mark.parametrize("format", ["csv", "jsonl"])
def test_a_row_torn_by_a_kill_ends_the_scan_at_the_last_whole_batch(tmp_path, format):
    whole = _text(format, BATCHES[:2])
    torn = batch_text(format, BATCHES[2], first=False)[:-7]
    path = _write(tmp_path, format, whole + torn)

    scan = _scan(path, format)

    assert scan.kept == len(whole.encode()) and sum(scan.done.values()) == 4


def test_a_csv_row_torn_inside_a_quoted_newline_is_taken_for_torn(tmp_path):
    whole = _text("csv", BATCHES[:1])
    path = _write(tmp_path, "csv", whole + '"cut\nhere')

    assert _scan(path, "csv").kept == len(whole.encode())


def test_a_batch_size_of_one_keeps_every_whole_image(tmp_path):
    path = _write(tmp_path, "csv", _text("csv", BATCHES))

    scan = _scan(path, "csv", batch_size=1)

    assert scan.kept == path.stat().st_size and sum(scan.done.values()) == 5 and scan.pending == []


def test_a_csv_whose_header_alone_is_torn_holds_nothing(tmp_path):
    path = _write(tmp_path, "csv", header("csv")[:9])

    scan = _scan(path, "csv")

    assert (scan.kept, scan.done, scan.failed) == (0, Counter(), 0)


@pytest.mark.parametrize(("text", "why"), [
    ("name,label\nx.png,dog\n", "does not start with tlcli's CSV header"),
    # Re-saved by a spreadsheet with CRLF line ends: the same rows, but not the bytes tlcli wrote.
    (_text("csv", BATCHES).replace("\n", "\r\n"), "does not start with tlcli's CSV header"),
    (header("csv") + '"a.png",1,dog,0.750000,\n"a.png",2,cat,0.250000,\n', "has a row tlcli did not write"),
    (header("csv") + "a.png,1,dog\nb.png,1,dog,0.1,\n", "has a row tlcli did not write"),
])
def test_a_csv_tlcli_did_not_write_is_refused(tmp_path, text, why):
    path = _write(tmp_path, "csv", text)

    with pytest.raises(TlcliError, match=why) as refused:
        _scan(path, "csv")

    assert str(path) in str(refused.value) and "--resume continues only a file tlcli predict wrote" in str(refused.value)


@pytest.mark.parametrize("topk", [1, 3])
def test_a_csv_written_with_another_topk_is_refused(tmp_path, topk):
    path = _write(tmp_path, "csv", _text("csv", BATCHES))

    with pytest.raises(TlcliError, match=f"another number of rows per image than --topk {topk} writes"):
        _scan(path, "csv", topk=topk)


@pytest.mark.parametrize("line", [
    '{"path": "a.png", "error": null, "predictions": []}\n',  # the keys in another order
    '{"path":"a.png","predictions":[],"error":"x"}\n',  # other spacing
    '["a.png"]\n',
    "not json at all\n",
])
def test_a_json_lines_file_tlcli_did_not_write_is_refused(tmp_path, line):
    path = _write(tmp_path, "jsonl", _text("jsonl", BATCHES[:1]) + line + _text("jsonl", BATCHES[1:2]))

    with pytest.raises(TlcliError, match="line 3 is not a prediction tlcli wrote"):
        _scan(path, "jsonl")


def test_a_json_lines_file_torn_at_its_end_by_something_else_is_refused(tmp_path):
    path = _write(tmp_path, "jsonl", _text("jsonl", BATCHES[:1]) + "garbage")

    with pytest.raises(TlcliError, match="line 3 is not a prediction tlcli wrote"):
        _scan(path, "jsonl")


def test_a_json_lines_file_written_with_another_topk_is_refused(tmp_path):
    path = _write(tmp_path, "jsonl", _text("jsonl", BATCHES))

    with pytest.raises(TlcliError, match="line 1 holds 2 predictions where --topk 3 writes 3"):
        _scan(path, "jsonl", topk=3)


def test_an_error_line_has_no_predictions_whatever_the_topk(tmp_path):
    path = _write(tmp_path, "jsonl", _text("jsonl", [[_failed("x.png"), _failed("y.png")]]))

    scan = _scan(path, "jsonl", topk=5)

    assert scan.failed == 2 and scan.kept == path.stat().st_size


def test_file_names_that_are_not_utf8_are_found_again_as_written(tmp_path):
    name = b"caf\xe9.png".decode("utf-8", "surrogateescape")
    batch = [[_image(name)]]
    for format in ("csv", "jsonl"):
        path = _write(tmp_path, format, _text(format, batch).encode("utf-8", "surrogateescape"))

        assert _scan(path, format, batch_size=1).done == Counter({name: 1})
