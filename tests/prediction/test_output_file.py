"""``tlcli.prediction.output_file``: the ``--output`` file: what is refused before any work, the
header of a new file, ``--resume`` keeping the whole batches and cutting the rest (and never
changing a file that is not tlcli's), the lock against a second job, FIFOs, and write errors."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from tlcli.core.errors import TlcliError
from tlcli.prediction.output_file import ResultsFile, check_output, open_results
from tlcli.prediction.results import Prediction, batch_text, header


def _batch(*names: str) -> list[Prediction]:
    return [Prediction(name, [("dog", 0.75), ("cat", 0.25)]) for name in names]


def _open(path: Path, format: str = "csv", *, resume: bool = False, batch_size: int = 2) -> ResultsFile:
    return open_results(path, format, resume=resume, topk=2, batch_size=batch_size)


def test_a_missing_file_or_an_empty_one_may_be_written(tmp_path):
    check_output(tmp_path / "new.csv", "csv", resume=False)
    (tmp_path / "empty.csv").touch()
    check_output(tmp_path / "empty.csv", "csv", resume=False)


@pytest.mark.parametrize(("setup", "format", "resume", "message"), [
    ("folder", "csv", False, "is a folder; --output takes a file"),
    ("file", "csv", False, "already exists: add --resume to continue it"),
    ("fifo", "csv", True, "is not a regular file: --resume needs a file it can read back"),
    ("file", "json", True, "--resume continues --csv or --jsonl files, not --json"),
    ("file", "table", True, "--resume continues --csv or --jsonl files, not --table"),
])
def test_what_check_output_refuses_before_any_work(tmp_path, setup, format, resume, message):
    target = tmp_path / "out"
    if setup == "folder":
        target.mkdir()
    elif setup == "fifo":
        os.mkfifo(target)
    else:
        target.write_text(header("csv"))

    with pytest.raises(TlcliError, match=message):
        check_output(target, format, resume=resume)


@pytest.mark.parametrize("format", ["csv", "jsonl", "json"])
def test_a_new_file_starts_with_its_formats_header_and_takes_batches_whole(tmp_path, format):
    path = tmp_path / f"out.{format}"
    text = batch_text(format, _batch("a.png", "b.png"), first=True)

    results = _open(path, format)
    results.write(text)
    results.close()

    assert path.read_text() == header(format) + text
    assert (results.done, results.failed, results.cut, results.regular) == (Counter(), 0, 0, True)


@pytest.mark.parametrize("format", ["csv", "jsonl"])
def test_resume_keeps_the_whole_batches_and_cuts_the_rest(tmp_path, format):
    path = tmp_path / f"out.{format}"
    whole = header(format) + batch_text(format, _batch("a.png", "b.png"), first=True)
    after = batch_text(format, _batch("c.png"), first=False) + batch_text(format, _batch("d.png"), first=False)[:-5]
    path.write_text(whole + after)

    results = _open(path, format, resume=True)
    results.write(batch_text(format, _batch("c.png", "d.png"), first=False))
    results.close()

    assert results.done == Counter({"a.png": 1, "b.png": 1})
    assert results.cut == len(after.encode())
    # The new batch follows the kept one directly: the cut bytes are gone, not overwritten in part.
    assert path.read_text() == whole + batch_text(format, _batch("c.png", "d.png"), first=False)


def test_resume_counts_error_rows_already_in_the_file(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text(header("csv") + batch_text("csv", [*_batch("a.png"), Prediction("bad.png", [], "unreadable")], first=True))

    results = _open(path, resume=True)
    results.close()

    assert results.failed == 1 and results.done == Counter({"a.png": 1, "bad.png": 1}) and results.cut == 0


def test_resume_of_a_file_cut_inside_its_header_writes_the_header_again(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text(header("csv")[:10])

    _open(path, resume=True).close()

    assert path.read_text() == header("csv")


def test_resume_never_changes_a_file_that_is_not_tlcli_output(tmp_path):
    path = tmp_path / "notes.csv"
    original = b"name,amount\nrent,1200\nfood,300\n"
    path.write_bytes(original)

    with pytest.raises(TlcliError, match="does not start with tlcli's CSV header"):
        _open(path, resume=True)

    assert path.read_bytes() == original


def test_a_second_job_on_the_same_file_is_refused_while_the_first_holds_it(tmp_path):
    path = tmp_path / "out.csv"
    first = _open(path)
    try:
        with pytest.raises(TlcliError, match="is being written by another tlcli predict"):
            _open(path, resume=True)
    finally:
        first.close()

    _open(path, resume=True).close()  # released with the first job's descriptor


def test_a_refused_resume_releases_its_lock(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("something else\n")
    with pytest.raises(TlcliError):
        _open(path, resume=True)
    path.write_text("")

    _open(path, resume=True).close()  # would be refused as "being written" if the lock leaked

    assert path.read_text() == header("csv")


def test_a_fifo_is_written_to_and_never_read_back(tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        results = _open(fifo)
        results.write("row\n")
        results.close()
        assert not results.regular and os.read(reader, 1000) == (header("csv") + "row\n").encode()
    finally:
        os.close(reader)


def test_a_fifo_nobody_reads_is_an_error_instead_of_a_hang(tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)

    with pytest.raises(TlcliError, match="cannot write .*out.fifo: No such device or address"):
        _open(fifo)


def test_a_full_disk_is_a_clear_error():
    results = ResultsFile(Path("/dev/full"), os.open("/dev/full", os.O_WRONLY))
    try:
        with pytest.raises(TlcliError, match="cannot write /dev/full: No space left on device"):
            results.write("row\n")
    finally:
        results.close()
