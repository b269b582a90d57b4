"""What ``predict`` classifies, as a lazy stream of named items in a documented order.

Arguments are taken in the order given: a file as itself, a folder as every image below it
sorted by path, a glob as its matches sorted, ``-`` as one image read from standard input, and
a list file (``--from-list``) as its lines in order. Nothing is listed ahead of need, so a list
of millions of paths on stdin costs memory for one batch at a time.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import select
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

from tlcli.data.images import has_image_extension, is_hidden
from tlcli.core.errors import TlcliError

STDIN = "-"
# The largest image read from standard input or a pipe: a stream has no size to check beforehand.
STREAM_IMAGE_LIMIT = 256 * 2**20
FIFO_WAIT = 10  # seconds a FIFO given as an image may wait for its writer
# The longest line of a list file: a path, not a stream of zeros (/dev/zero has no newlines).
LIST_LINE_LIMIT = 4096


@dataclass(frozen=True)
class Item:
    """One row of the output: ``name`` is how it is reported (and how ``--resume`` finds it)."""

    name: str
    source: Union[Path, bytes, None] = None  # a file, encoded bytes from stdin, or None with ``error``
    error: str | None = None


def _folder_images(folder: Path) -> list[Path]:
    return sorted(
        path for path in folder.rglob("*")
        if path.is_file() and has_image_extension(path) and not any(is_hidden(part) for part in path.relative_to(folder).parts)
    )


def _open_without_waiting(path: Path) -> int:
    """A descriptor for reading, opened without blocking (a FIFO's open waits for a writer) and
    then made blocking again, so that reads wait for data as usual."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    os.set_blocking(descriptor, True)
    return descriptor


def _streamed(name: str, stream: BinaryIO) -> Item:
    """One image read whole from a stream, which has no size to check beforehand."""
    data = stream.read(STREAM_IMAGE_LIMIT + 1)
    if len(data) > STREAM_IMAGE_LIMIT:
        return Item(name, error=f"larger than {STREAM_IMAGE_LIMIT:,} bytes, the most read of an image from a stream")
    return Item(name, data) if data else Item(name, error="nothing to read (an empty stream)")


def _special(name: str, path: Path) -> Item:
    """A pipe (``<(curl ...)``, a FIFO) or a device, read now. Opened without blocking, then a
    FIFO is given ``FIFO_WAIT`` seconds for a writer to come, instead of hanging for one."""
    try:
        descriptor = _open_without_waiting(path)
    except OSError as exc:
        return Item(name, error=f"cannot be read: {exc.strerror or exc}")
    if stat.S_ISFIFO(os.fstat(descriptor).st_mode):
        waiting = select.poll()
        waiting.register(descriptor, select.POLLIN)
        if not waiting.poll(FIFO_WAIT * 1000):
            os.close(descriptor)
            return Item(name, error=f"a FIFO nobody wrote to within {FIFO_WAIT} s")
    with os.fdopen(descriptor, "rb") as stream:
        return _streamed(name, stream)


def _expand(argument: str, stdin: BinaryIO) -> Iterator[Item]:
    if argument == STDIN:
        yield _streamed(STDIN, stdin)
        return
    path = Path(argument)
    try:
        path.stat()
    except OSError as exc:  # a name over the system's limits, a loop of links: that input's error, not the job's
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            yield Item(argument, error=exc.strerror or str(exc))
            return
    if path.is_dir():
        images = _folder_images(path)
        yield from (Item(str(image), image) for image in images)
        if not images:
            yield Item(argument, error="no image files in this folder")
    elif path.is_file():
        yield Item(argument, path)
    elif path.exists():
        yield _special(argument, path)
    elif any(c in argument for c in "*?["):
        matches = sorted(Path(m) for m in glob.glob(argument, recursive=True) if Path(m).is_file())
        yield from (Item(str(match), match) for match in matches)
        if not matches:
            yield Item(argument, error="no file matches this pattern")
    else:
        yield Item(argument, error="no such file or folder")


def _list_lines(stream: BinaryIO, name: str) -> Iterator[str]:
    for number, raw in enumerate(iter(lambda: stream.readline(LIST_LINE_LIMIT + 1), b""), start=1):
        if len(raw) > LIST_LINE_LIMIT and not raw.endswith(b"\n"):
            raise TlcliError(f"line {number} of the list {name} is longer than {LIST_LINE_LIMIT:,} bytes: it is not a list of paths")
        line = raw.decode("utf-8", errors="surrogateescape").rstrip("\r\n").removeprefix("\ufeff" if number == 1 else "")
        if line.strip():
            yield line


def _open_list(name: str) -> BinaryIO:
    """Opened without blocking, so that a FIFO nobody writes to reads as empty instead of hanging;
    a pipe with a writer (``--from-list <(find ...)``) is then read as it is written."""
    try:
        descriptor = _open_without_waiting(Path(name))
    except OSError as exc:
        raise TlcliError(f"cannot read the list {name}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise TlcliError(f"the list {name} is a folder; give a file of paths, one a line")
    return os.fdopen(descriptor, "rb")


def iter_items(arguments: list[str], *, from_list: str | None = None, stdin: BinaryIO | None = None) -> Iterator[Item]:
    """Every item to classify, in order: the arguments first, then the list file's lines."""
    stdin = stdin if stdin is not None else sys.stdin.buffer
    for argument in arguments:
        yield from _expand(argument, stdin)
    if from_list is None:
        return
    with contextlib.nullcontext(stdin) if from_list == STDIN else _open_list(from_list) as stream:
        for line in _list_lines(stream, "on stdin" if from_list == STDIN else from_list):
            yield from _expand(line, stdin) if line != STDIN else [Item(line, error="'-' inside a list is not an image")]
