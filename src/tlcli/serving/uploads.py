"""One POST to ``/predict``, received without trusting its sender.

A client decides how fast its body arrives, how large it is, how many files it holds and what
its query says; each is bounded here before it can hold the server: the whole body must arrive
within a deadline (a trickle cannot extend it), no more than the upload limit is ever read
(counted while it streams, a chunked body included; nothing is spooled to disk), the files are
counted, and every bad query value is a JSON 4xx. Refusals are ``Refused``, which the app
answers as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor

RETRY_AFTER_SECONDS = 1
MAX_FILES = 1000
MAX_TOPK_DIGITS = 6
# What a multipart body may hold beyond its images: boundaries and part headers (~150 bytes a
# file, so MAX_FILES of them fit), before its declared or counted size is refused unread.
ENVELOPE_BYTES = 256 * 1024
FORM_HELP = "send the images as multipart/form-data in fields named 'image'"


class Refused(Exception):
    """An upload answered with a JSON error instead of classes. The connection is closed after
    it: the body may be unread, and a client refused for its pace or size is not kept."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = {"Connection": "close", **(headers or {})}


def _busy(what: str) -> Refused:
    return Refused(503, f"the server is busy ({what}); retry shortly", {"Retry-After": str(RETRY_AFTER_SECONDS)})


class _Slots:
    """At most ``capacity`` holders at once; one more gets 503. Touched on the event loop's
    thread alone, so it needs no lock."""

    def __init__(self, capacity: int, what: str):
        self.capacity, self.taken, self.what = capacity, 0, what

    @contextlib.contextmanager
    def take(self):
        if self.taken >= self.capacity:
            raise _busy(f"{self.taken} {self.what}")
        self.taken += 1
        try:
            yield
        finally:
            self.taken -= 1


class UploadGate:
    """Where uploads wait, and how many: ``receiving`` bodies arrive at once, each holding up to
    the upload limit in memory; then ``concurrency`` worker threads decode and classify while
    ``queue`` more uploads wait for them. Past either bound an upload gets 503.

    Receiving comes first and takes no worker's place: a slow sender holds one receiving slot
    for at most the body timeout, and the uploads that did arrive go on being classified.
    The workers bound memory: PIL has no draft mode for PNG, so a 9400x9400 PNG decodes to
    ~265 MB of RGB, ~0.7 GB at its peak with its oriented copy. Dedicated threads rather than a
    shared pool, because glibc gives each thread that allocates its own arena, which keeps what
    a decode freed: a fixed few threads keep a fixed few arenas.
    """

    def __init__(self, *, concurrency: int, queue: int, receiving: int):
        self.workers = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tlcli-classify")
        self.receive_slot = _Slots(receiving, "uploads arriving").take
        self.classify_slot = _Slots(concurrency + queue, "uploads being classified or waiting").take
        self.stopping = asyncio.Event()  # set when the server shuts down: bodies still arriving get 503

    async def run(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self.workers, function, *args)


def requested_topk(query_params, default: int, classes: int) -> int:
    """``?topk=N``, else the server's ``--topk``; clamped to the number of classes."""
    values = query_params.getlist("topk")
    if not values:
        return min(default, classes)
    if len(values) > 1:
        raise Refused(400, f"give topk once, not {len(values)} times")
    asked = values[0]
    # Digits counted before int(): Python refuses to convert 4,300 digits and more (a 500).
    if not (asked.isascii() and asked.isdigit() and len(asked) <= MAX_TOPK_DIGITS) or int(asked) < 1:
        shown = asked if len(asked) <= 20 else f"{asked[:20]}... ({len(asked):,} characters)"
        raise Refused(400, f"topk must be a whole number from 1 to {10**MAX_TOPK_DIGITS - 1:,}, got '{shown}'")
    return min(int(asked), classes)


def form_boundary(headers, max_bytes: int) -> bytes:
    """The multipart boundary of a body that may be read: refused first when it is not
    multipart/form-data or declares a length over the limit, before any of it is read."""
    from python_multipart.multipart import parse_options_header

    content_type, options = parse_options_header(headers.get("content-type"))
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise Refused(400, FORM_HELP)
    declared = headers.get("content-length", "")
    if declared.isdigit() and (len(declared) > 15 or int(declared) > max_bytes + ENVELOPE_BYTES):
        raise _too_large(max_bytes)
    return options[b"boundary"]


def _too_large(max_bytes: int) -> Refused:
    return Refused(413, f"upload larger than the {max_bytes:,}-byte limit")


async def receive_uploads(
    request, boundary: bytes, *, max_bytes: int, timeout: float, stopping: asyncio.Event
) -> list[tuple[str, bytes]]:
    """(filename, bytes) of every file in the field ``image``, in order, once the whole body has
    arrived within ``timeout`` seconds (408 otherwise, as soon as it runs out); 503 when the
    server starts stopping first."""
    reading = asyncio.ensure_future(_read_form(request, boundary, max_bytes))
    stopped = asyncio.ensure_future(stopping.wait())
    try:
        done, _ = await asyncio.wait({reading, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        reading.cancel()
        stopped.cancel()
    if reading in done:
        return reading.result()
    if stopped in done:
        raise Refused(503, "the server is stopping")
    raise Refused(408, f"the upload did not arrive within the server's {timeout:g}-second limit; send it whole, at once")


async def _read_form(request, boundary: bytes, max_bytes: int) -> list[tuple[str, bytes]]:
    from starlette.requests import ClientDisconnect

    form = _ImageParts(boundary, max_bytes)
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes + ENVELOPE_BYTES:  # the rest is never read
                raise _too_large(max_bytes)
            form.write(chunk)
    except ClientDisconnect:
        raise Refused(400, "the client closed the connection before the upload ended") from None
    return form.finished()


class _ImageParts:
    """The files of the multipart field ``image``, parsed as the body arrives and kept in
    memory (the body is bounded); other fields are skipped, and files beyond ``MAX_FILES``
    counted but not kept, so the refusal can say how many were sent."""

    def __init__(self, boundary: bytes, max_bytes: int):
        from python_multipart import MultipartParser
        from python_multipart.exceptions import FormParserError

        self.max_bytes, self.kept_bytes = max_bytes, 0
        self.files: list[tuple[str, bytearray]] = []
        self.sent = 0
        self.ended = False
        self._header, self._value, self._disposition = bytearray(), bytearray(), b""
        self._current: bytearray | None = None
        callbacks = {
            "on_part_begin": self._part_begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._data, "on_end": self._end,
        }
        try:
            self._parser = MultipartParser(boundary, callbacks)
        except FormParserError:  # a boundary over 70 characters
            raise Refused(400, FORM_HELP) from None

    def write(self, chunk: bytes) -> None:
        from python_multipart.exceptions import FormParserError

        try:
            self._parser.write(chunk)
        except FormParserError:
            raise Refused(400, FORM_HELP) from None

    def finished(self) -> list[tuple[str, bytes]]:
        if not self.ended:
            raise Refused(400, f"the multipart body ended before its closing boundary; {FORM_HELP}")
        if self.sent > MAX_FILES:
            raise Refused(413, f"too many files: {self.sent:,} sent, at most {MAX_FILES:,} per request")
        if not self.files:
            raise Refused(400, "no file in the 'image' field")
        return [(name, bytes(data)) for name, data in self.files]

    def _part_begin(self) -> None:
        self._disposition, self._current = b"", None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header.extend(data[start:end])

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value.extend(data[start:end])

    def _header_end(self) -> None:
        if bytes(self._header).strip().lower() == b"content-disposition":
            self._disposition = bytes(self._value)
        self._header.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._disposition)
        if options.get(b"name") != b"image" or b"filename" not in options:
            return  # a text field or another field: skipped, as before
        self.sent += 1
        if self.sent <= MAX_FILES:
            self._current = bytearray()
            self.files.append((_decoded(options[b"filename"]), self._current))

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._current is None:
            return
        self.kept_bytes += end - start
        if self.kept_bytes > self.max_bytes:
            raise _too_large(self.max_bytes)
        self._current.extend(data[start:end])

    def _end(self) -> None:
        self.ended = True


def _decoded(name: bytes) -> str:
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        return name.decode("latin-1")
