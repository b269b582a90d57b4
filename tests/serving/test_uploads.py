"""``tlcli.serving.uploads``: one ``/predict`` POST received without trusting its sender: the
``topk`` query, the multipart boundary and declared size checked before reading, the gate's
limits on uploads arriving and being classified, and ``receive_uploads`` reading the image files
of a body (as starlette hands it over, chunk by chunk) within its size, file count and deadline."""

from __future__ import annotations

import asyncio
import threading

import pytest

pytest.importorskip("fastapi")
from starlette.datastructures import Headers, QueryParams  # noqa: E402 - after the serve extra is known to be there
from starlette.requests import Request  # noqa: E402

from tlcli.serving import uploads  # noqa: E402
from tlcli.serving.uploads import (  # noqa: E402
    ENVELOPE_BYTES, FORM_HELP, Refused, UploadGate, form_boundary, receive_uploads, requested_topk,
)

BOUNDARY = b"tlcli-test-boundary"


def _part(name: str, data: bytes, filename: bytes | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'.encode() + (b'; filename="' + filename + b'"' if filename is not None else b"")
    return b"--" + BOUNDARY + b"\r\nContent-Disposition: " + disposition + b"\r\nContent-Type: image/png\r\n\r\n" + data + b"\r\n"


def _body(*parts: bytes, closed: bool = True) -> bytes:
    return b"".join(parts) + (b"--" + BOUNDARY + b"--\r\n" if closed else b"")


def _request(chunks: list[bytes], *, then=None) -> Request:
    """A starlette request whose body arrives in ``chunks``; ``then`` is what the client does
    after them (None: the body ends; "disconnect"; "stall": nothing ever again)."""
    messages = [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks]
    if then is None:
        messages.append({"type": "http.request", "body": b"", "more_body": False})
    elif then == "disconnect":
        messages.append({"type": "http.disconnect"})

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # a client that sends nothing more

    return Request({"type": "http", "method": "POST", "path": "/predict", "headers": []}, receive)


def _receive(request: Request, *, max_bytes: int = 1000, timeout: float = 5.0, stopping: bool = False):
    async def main():
        event = asyncio.Event()
        if stopping:
            event.set()
        return await receive_uploads(request, BOUNDARY, max_bytes=max_bytes, timeout=timeout, stopping=event)

    return asyncio.run(main())


def _refusal(call) -> Refused:
    with pytest.raises(Refused) as refused:
        call()
    return refused.value


def test_a_refusal_closes_the_connection_and_keeps_extra_headers():
    refused = Refused(503, "busy", {"Retry-After": "1"})

    assert (refused.status, str(refused)) == (503, "busy")
    assert refused.headers == {"Connection": "close", "Retry-After": "1"}


@pytest.mark.parametrize(("query", "default", "classes", "topk"), [
    ("", 5, 10, 5), ("", 5, 3, 3), ("topk=2", 5, 10, 2), ("topk=999999", 5, 10, 10),
])
def test_topk_is_the_query_s_else_the_server_s_clamped_to_the_classes(query, default, classes, topk):
    assert requested_topk(QueryParams(query), default, classes) == topk


@pytest.mark.parametrize(("query", "message"), [
    ("topk=0", "topk must be a whole number from 1 to 999,999, got '0'"),
    ("topk=-1", "got '-1'"),
    ("topk=2.5", "got '2.5'"),
    ("topk=%EF%BC%93", "got '\uff13'"),  # a full-width digit: isdigit() says yes, int() too, but it is no ASCII number
    ("topk=1234567", "got '1234567'"),
    ("topk=" + "9" * 5000, "got '99999999999999999999... (5,000 characters)'"),
    ("topk=1&topk=2", "give topk once, not 2 times"),
])
def test_a_bad_topk_is_a_400_that_quotes_it_briefly(query, message):
    refused = _refusal(lambda: requested_topk(QueryParams(query), 5, 10))

    assert refused.status == 400 and message in str(refused)


def test_the_boundary_of_a_multipart_form_is_returned():
    headers = Headers({"content-type": f"multipart/form-data; boundary={BOUNDARY.decode()}", "content-length": "500"})

    assert form_boundary(headers, 1000) == BOUNDARY


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data", "image/png; boundary=x", None])
def test_what_is_not_a_multipart_form_with_a_boundary_is_a_400(content_type):
    headers = Headers({"content-type": content_type} if content_type else {})

    refused = _refusal(lambda: form_boundary(headers, 1000))

    assert (refused.status, str(refused)) == (400, FORM_HELP)


@pytest.mark.parametrize("length", [str(1000 + ENVELOPE_BYTES + 1), "9" * 16])
def test_a_declared_length_over_the_limit_is_a_413_before_any_byte_is_read(length):
    headers = Headers({"content-type": "multipart/form-data; boundary=b", "content-length": length})

    refused = _refusal(lambda: form_boundary(headers, 1000))

    assert refused.status == 413 and "upload larger than the 1,000-byte limit" in str(refused)


def test_the_envelope_beyond_the_images_is_allowed():
    headers = Headers({"content-type": "multipart/form-data; boundary=b", "content-length": str(1000 + ENVELOPE_BYTES)})

    assert form_boundary(headers, 1000) == b"b"


def test_the_gate_turns_away_one_upload_more_than_each_limit_with_503():
    gate = UploadGate(concurrency=1, queue=2, receiving=2)
    try:
        with gate.receive_slot(), gate.receive_slot():
            refused = _refusal(lambda: gate.receive_slot().__enter__())
        with gate.classify_slot(), gate.classify_slot(), gate.classify_slot():  # one working, two waiting
            busy = _refusal(lambda: gate.classify_slot().__enter__())
        with gate.receive_slot(), gate.receive_slot(), gate.classify_slot():  # all given back
            pass
    finally:
        gate.workers.shutdown()

    assert (refused.status, refused.headers["Retry-After"]) == (503, "1") and "2 uploads arriving" in str(refused)
    assert busy.status == 503 and "3 uploads being classified or waiting" in str(busy)


def test_the_gate_classifies_on_its_own_worker_threads():
    gate = UploadGate(concurrency=1, queue=0, receiving=1)
    try:
        name = asyncio.run(gate.run(lambda: threading.current_thread().name))
    finally:
        gate.workers.shutdown()

    assert name.startswith("tlcli-classify") and name != threading.main_thread().name


def test_the_image_files_of_a_body_are_received_in_order_whatever_the_chunks():
    body = _body(_part("note", b"a text field"), _part("image", b"first", b"one.png"), _part("other", b"x", b"skip.png"),
                 _part("image", b"second\r\n--not-a-boundary", b"two.png"))
    chunks = [body[i:i + 7] for i in range(0, len(body), 7)]

    assert _receive(_request(chunks)) == [("one.png", b"first"), ("two.png", b"second\r\n--not-a-boundary")]


def test_a_file_name_that_is_not_utf8_is_read_as_latin1():
    assert _receive(_request([_body(_part("image", b"x", "café.png".encode("latin-1")))])) == [("café.png", b"x")]


@pytest.mark.parametrize(("body", "status", "message"), [
    (_body(_part("image", b"x" * 1001, b"big.png")), 413, "upload larger than the 1,000-byte limit"),
    (_body(_part("image", b"x" * 600, b"a.png"), _part("image", b"x" * 600, b"b.png")), 413, "1,000-byte limit"),
    (_body(_part("note", b"hello")), 400, "no file in the 'image' field"),
    (_body(_part("image", b"x", b"a.png"), closed=False), 400, "the multipart body ended before its closing boundary"),
    (b"this is not multipart at all\r\n", 400, FORM_HELP),
])
def test_a_body_that_is_too_large_or_holds_no_image_is_refused(body, status, message):
    refused = _refusal(lambda: _receive(_request([body])))

    assert refused.status == status and message in str(refused)


def test_an_endless_body_is_refused_once_it_passes_the_limit_and_the_envelope():
    """Counted as it streams, also when no image field holds it (nothing there is kept)."""
    taken = []

    async def endless():
        taken.append(len(taken))
        body = _part("note", b"")[:-2] if len(taken) == 1 else b"x" * ENVELOPE_BYTES
        return {"type": "http.request", "body": body, "more_body": True}

    request = Request({"type": "http", "method": "POST", "path": "/predict", "headers": []}, endless)

    refused = _refusal(lambda: _receive(request, max_bytes=1000))

    assert refused.status == 413 and len(taken) == 3  # the part's headers, then two envelopes' worth


def test_more_files_than_allowed_are_counted_and_refused(monkeypatch):
    monkeypatch.setattr(uploads, "MAX_FILES", 2)
    body = _body(*[_part("image", b"x", f"{i}.png".encode()) for i in range(5)])

    refused = _refusal(lambda: _receive(_request([body])))

    assert refused.status == 413 and "too many files: 5 sent, at most 2 per request" in str(refused)


def test_a_body_that_does_not_arrive_in_time_is_a_408():
    refused = _refusal(lambda: _receive(_request([_part("image", b"x", b"a.png")], then="stall"), timeout=0.05))

    assert refused.status == 408 and "did not arrive within the server's 0.05-second limit" in str(refused)


def test_a_server_that_starts_stopping_answers_503():
    refused = _refusal(lambda: _receive(_request([_part("image", b"x", b"a.png")], then="stall"), stopping=True))

    assert (refused.status, str(refused)) == (503, "the server is stopping")


def test_a_client_that_disconnects_mid_body_is_a_400():
    refused = _refusal(lambda: _receive(_request([_part("image", b"x", b"a.png")], then="disconnect")))

    assert refused.status == 400 and "closed the connection before the upload ended" in str(refused)


def test_a_boundary_too_long_for_multipart_is_a_400():
    async def main():
        return await receive_uploads(_request([b"x"]), b"b" * 100, max_bytes=1000, timeout=5, stopping=asyncio.Event())

    refused = _refusal(lambda: asyncio.run(main()))

    assert (refused.status, str(refused)) == (400, FORM_HELP)
