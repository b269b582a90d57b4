"""``tlcli.prediction.inputs``: what ``predict`` classifies and in which order (arguments as given,
a folder's images sorted, a glob's matches sorted, then a list file's lines), the error items that
stand in for what cannot be read, and the bounds on streams, FIFOs and list lines."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest

from tests.helpers import write_image
from tlcli.core.errors import TlcliError
from tlcli.prediction import inputs
from tlcli.prediction.inputs import STDIN, Item, iter_items


def _names(items) -> list[str]:
    return [item.name for item in items]


def _errors(items) -> dict[str, str]:
    return {item.name: item.error for item in items if item.error is not None}


def test_arguments_then_list_lines_in_the_documented_order(tmp_path):
    single = write_image(tmp_path / "single.png", size=(8, 8))
    folder = tmp_path / "folder"
    # Written out of order, and nested: the folder's images come sorted by path.
    for name in ("z.png", "b/2.jpg", "a.png", "b/1.png"):
        write_image(folder / name, size=(8, 8), fmt="PNG")
    globbed = tmp_path / "globbed"
    for name in ("c3.png", "c1.png", "c2.png"):
        write_image(globbed / name, size=(8, 8))
    listed = [write_image(tmp_path / "listed" / f"{name}.png", size=(8, 8)) for name in ("y", "x")]
    list_file = tmp_path / "list.txt"
    list_file.write_text(f"{listed[0]}\n\n   \n{listed[1]}\n")

    items = list(iter_items([str(single), str(folder), str(globbed / "c*.png")], from_list=str(list_file), stdin=io.BytesIO()))

    assert _names(items) == [
        str(single),
        str(folder / "a.png"), str(folder / "b" / "1.png"), str(folder / "b" / "2.jpg"), str(folder / "z.png"),
        str(globbed / "c1.png"), str(globbed / "c2.png"), str(globbed / "c3.png"),
        str(listed[0]), str(listed[1]),  # the list's order, not sorted; blank lines skipped
    ]
    assert all(item.error is None and Path(item.source).is_file() for item in items)


def test_a_folder_skips_hidden_files_hidden_folders_and_other_extensions(tmp_path):
    folder = tmp_path / "photos"
    kept = write_image(folder / "kept.png", size=(8, 8))
    write_image(folder / ".hidden.png", size=(8, 8))
    write_image(folder / ".ipynb_checkpoints" / "copy.png", size=(8, 8))
    write_image(folder / "__MACOSX" / "fork.png", size=(8, 8))
    (folder / "notes.txt").write_text("not an image")

    assert _names(iter_items([str(folder)], stdin=io.BytesIO())) == [str(kept)]


def test_what_cannot_be_found_becomes_an_error_item_in_its_place(tmp_path):
    image = write_image(tmp_path / "here.png", size=(8, 8))
    (tmp_path / "empty").mkdir()
    arguments = [str(tmp_path / "gone.png"), str(tmp_path / "empty"), str(tmp_path / "nothing*.png"), str(image)]

    items = list(iter_items(arguments, stdin=io.BytesIO()))

    assert _names(items) == arguments  # each error keeps its place among the images
    assert _errors(items) == {
        arguments[0]: "no such file or folder",
        arguments[1]: "no image files in this folder",
        arguments[2]: "no file matches this pattern",
    }


def test_dash_reads_one_image_from_stdin_and_an_empty_stdin_is_an_error():
    data = b"\x89PNG any bytes: decoding is not this module's job"

    assert list(iter_items([STDIN], stdin=io.BytesIO(data))) == [Item(STDIN, data)]
    assert list(iter_items([STDIN], stdin=io.BytesIO())) == [Item(STDIN, error="nothing to read (an empty stream)")]


def test_an_image_on_a_stream_larger_than_the_limit_is_refused_unread(monkeypatch):
    monkeypatch.setattr(inputs, "STREAM_IMAGE_LIMIT", 10)

    [item] = iter_items([STDIN], stdin=io.BytesIO(b"x" * 11))
    [fits] = iter_items([STDIN], stdin=io.BytesIO(b"x" * 10))

    assert item.source is None and item.error.startswith("larger than 10 bytes")
    assert fits.source == b"x" * 10


def test_the_list_on_stdin_strips_a_bom_and_crlf_and_refuses_a_dash_line(tmp_path):
    image = write_image(tmp_path / "a.png", size=(8, 8))
    listing = f"\ufeff{image}\r\n-\r\n".encode()

    items = list(iter_items([], from_list=STDIN, stdin=io.BytesIO(listing)))

    assert items == [Item(str(image), image), Item(STDIN, error="'-' inside a list is not an image")]


def test_a_list_line_that_is_not_utf8_keeps_its_bytes_as_surrogates(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"caf\xe9.png\n")

    [item] = iter_items([], from_list=str(listing), stdin=io.BytesIO())

    assert item.name == "caf\udce9.png" and item.name.encode("utf-8", "surrogateescape") == b"caf\xe9.png"
    assert item.error == "no such file or folder"


def test_a_list_line_longer_than_the_limit_is_refused_but_one_within_it_is_read():
    # LIST_LINE_LIMIT bytes with its newline, in folders of legal length: a path the system can stat.
    within = (("a" * 200 + "/") * 20 + "a" * 200)[: inputs.LIST_LINE_LIMIT - 1]
    [item] = iter_items([], from_list=STDIN, stdin=io.BytesIO(within.encode() + b"\n"))
    assert item == Item(within, error="no such file or folder")

    # /dev/zero as a list: one endless line, which must not be read into memory whole.
    endless = io.BytesIO(b"\0" * (inputs.LIST_LINE_LIMIT * 3))
    with pytest.raises(TlcliError, match="line 1 of the list on stdin is longer than 4,096 bytes"):
        list(iter_items([], from_list=STDIN, stdin=endless))


def test_the_list_is_read_a_line_at_a_time_as_items_are_needed(tmp_path):
    images = [write_image(tmp_path / f"{i}.png", size=(8, 8)) for i in range(3)]

    class CountingStream:
        """A list on stdin that counts the lines taken from it."""

        def __init__(self, lines):
            self.lines, self.read = [f"{line}\n".encode() for line in lines], 0

        def readline(self, limit):
            self.read += 1
            return self.lines[self.read - 1] if self.read <= len(self.lines) else b""

    stream = CountingStream(images)
    items = iter_items([], from_list=STDIN, stdin=stream)

    assert next(items).name == str(images[0]) and stream.read == 1


def test_a_fifo_list_without_a_writer_reads_as_empty_instead_of_hanging(tmp_path):
    fifo = tmp_path / "list.fifo"
    os.mkfifo(fifo)

    assert list(iter_items([], from_list=str(fifo), stdin=io.BytesIO())) == []


def test_a_missing_list_or_a_folder_given_as_the_list_is_a_clear_error(tmp_path):
    with pytest.raises(TlcliError, match="cannot read the list .*gone.txt: No such file or directory"):
        list(iter_items([], from_list=str(tmp_path / "gone.txt"), stdin=io.BytesIO()))
    with pytest.raises(TlcliError, match="is a folder; give a file of paths"):
        list(iter_items([], from_list=str(tmp_path), stdin=io.BytesIO()))


def test_a_fifo_image_without_a_writer_gives_up_after_the_wait(tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "FIFO_WAIT", 0)  # the documented 10 s would only slow the test
    fifo = tmp_path / "image.fifo"
    os.mkfifo(fifo)

    assert list(iter_items([str(fifo)], stdin=io.BytesIO())) == [Item(str(fifo), error="a FIFO nobody wrote to within 0 s")]


def test_a_fifo_image_with_a_writer_is_read_whole(tmp_path):
    fifo = tmp_path / "image.fifo"
    os.mkfifo(fifo)
    data = write_image(tmp_path / "source.png", size=(8, 8)).read_bytes()

    def writer():
        with open(fifo, "wb") as stream:  # blocks until the reader has opened the FIFO
            stream.write(data)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    items = list(iter_items([str(fifo)], stdin=io.BytesIO()))
    thread.join(timeout=5)

    assert items == [Item(str(fifo), data)]


def test_a_name_too_long_for_the_system_is_an_error_item_not_a_crash():
    too_long = "a" * 300  # one component over NAME_MAX (255)

    [item] = iter_items([too_long], stdin=io.BytesIO())

    assert item.name == too_long and item.error is not None
