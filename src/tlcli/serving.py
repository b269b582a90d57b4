"""``serve``: an HTTP API and a phone-friendly page that classify uploaded or camera photos.

Built on FastAPI (the ``serve`` extra). One POST may carry several images, each answered in
turn. Bad uploads (empty, not an image, too large, a decompression bomb) get a JSON 4xx answer
and the server keeps serving. Decoding, preprocessing
and inference run in worker threads, a few at a time, so the event loop stays free to answer
``/health`` and to turn away, with 503, uploads beyond what may wait.
"""


import asyncio
import errno
import importlib.util
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Callable

from tlcli.data.images import BadImageError, open_image_bytes
from tlcli.errors import TlcliError

RETRY_AFTER_SECONDS = 1


class _Refused(Exception):
    """An upload answered with a JSON error instead of classes."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers


class _UploadLimit:
    """``concurrency`` worker threads decode and classify uploads; ``queue`` more uploads may wait.

    This is what bounds the server's memory: PIL has no draft mode for PNG, so a 9400x9400 PNG
    decodes to ~265 MB of RGB, and shrinking it afterwards (``reduce``, ``thumbnail``) starts from
    those decoded pixels; with its oriented copy, one such upload raised peak memory by ~0.7 GB.
    Dedicated threads rather than a shared pool, because glibc gives each thread that allocates
    its own arena, which keeps what a decode freed: a fixed few threads keep a fixed few arenas.
    Uploads past ``concurrency + queue`` are refused before their body is read.
    """

    def __init__(self, concurrency: int, queue: int):
        self.workers = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tlcli-classify")
        self.capacity = concurrency + queue
        self.admitted = 0  # only touched on the event loop's thread, so no lock

    def admit(self) -> None:
        if self.admitted >= self.capacity:
            raise _Refused(
                503,
                f"the server is busy ({self.admitted} uploads being classified or waiting); retry shortly",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self.admitted += 1

    def release(self) -> None:
        self.admitted -= 1

    async def run(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self.workers, function, *args)


async def _read_uploads(request, max_bytes: int) -> list[tuple[str, bytes]]:
    """(filename, bytes) of every file in the multipart field ``image``, in order; raises _Refused
    for anything else. ``max_bytes`` bounds the upload as a whole, all its images together."""
    try:
        form = await request.form(max_part_size=max_bytes + 1)
    except Exception:  # the multipart parser rejects oversized and malformed bodies alike
        raise _Refused(400, "send the images as multipart/form-data in fields named 'image'") from None
    uploads = [upload for upload in form.getlist("image") if not isinstance(upload, str)]
    if not uploads:
        raise _Refused(400, "no file in the 'image' field")
    files, total = [], 0
    for upload in uploads:
        data = await upload.read(max_bytes + 1 - total)
        total += len(data)
        if total > max_bytes:
            raise _Refused(413, f"upload larger than the {max_bytes:,}-byte limit")
        files.append((upload.filename or "", data))
    return files


def _topk(request, default: int, classes: int) -> int:
    """``?topk=N``, else the server's ``--topk``; clamped to the number of classes."""
    asked = request.query_params.get("topk")
    if asked is None:
        return min(default, classes)
    if not (asked.isascii() and asked.isdigit()) or int(asked) < 1:
        raise _Refused(400, f"topk must be a whole number of at least 1, got '{asked}'")
    return min(int(asked), classes)


def _classify_one(classifier, data: bytes, k: int) -> dict[str, Any]:
    if not data:
        return {"predictions": [], "error": "the uploaded file is empty"}
    try:
        image = open_image_bytes(data, draft_size=classifier.draft_size)
    except BadImageError as exc:
        return {"predictions": [], "error": f"not a usable image: {exc}"}
    # One image at a time: memory stays that of one decode, and fixed-batch ONNX exports work.
    values, indices = classifier(classifier.transform(image).unsqueeze(0))[0].topk(k)
    return {"predictions": [{"label": classifier.classes[int(i)], "probability": float(v)} for v, i in zip(values, indices)]}


def _classify(classifier, uploads: list[tuple[str, bytes]], k: int) -> list[dict[str, Any]]:
    """Decode, preprocess and run the model: the slow, memory-hungry part, off the event loop."""
    return [{"filename": name, **_classify_one(classifier, data, k)} for name, data in uploads]


class _RequestLog:
    """ASGI middleware: one line per request (method, path, status, milliseconds, images)."""

    def __init__(self, app, log: Callable[[str], None]):
        self.app, self.log = app, log

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500

        async def noting_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            query = scope.get("query_string", b"").decode("latin-1")
            images = scope.get("state", {}).get("images", 0)
            self.log(
                f"{time.strftime('%Y-%m-%d %H:%M:%S')} {scope['method']} {scope['path']}{'?' + query if query else ''} "
                f"{status} {(time.perf_counter() - started) * 1000:.1f} ms {images} image{'' if images == 1 else 's'}"
            )


def create_app(
    classifier,
    *,
    max_bytes: int = 10 * 1024 * 1024,
    topk: int = 5,
    concurrency: int = 1,
    queue: int = 8,
    log: Callable[[str], None] | None = None,
):
    """The FastAPI app; ``concurrency`` uploads are classified at once and ``queue`` more may wait;
    ``log``, when given, receives one line per request."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import HTMLResponse, JSONResponse
    except ImportError:
        raise TlcliError("serving needs the serve extra: pip install 'tlcli[serve]'") from None

    limit = _UploadLimit(concurrency, queue)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        limit.workers.shutdown(cancel_futures=True)

    app = FastAPI(title="tlcli", docs_url=None, redoc_url=None, lifespan=lifespan)
    page = resources.files("tlcli").joinpath("page.html").read_text()

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": str(classifier.source), "classes": len(classifier.classes)}

    @app.get("/classes")
    def classes() -> dict[str, Any]:
        return {"classes": classifier.classes}

    @app.post("/predict")
    async def predict(request: Request):
        started = time.perf_counter()
        try:
            k = _topk(request, topk, len(classifier.classes))
            declared = request.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
                raise _Refused(413, f"upload larger than the {max_bytes:,}-byte limit")
            limit.admit()
            try:
                uploads = await _read_uploads(request, max_bytes)
                request.state.images = len(uploads)
                results = await limit.run(_classify, classifier, uploads, k)
            finally:
                limit.release()
        except _Refused as refused:
            return JSONResponse({"error": str(refused)}, status_code=refused.status, headers=refused.headers)
        answer: dict[str, Any] = {"results": results, "milliseconds": round((time.perf_counter() - started) * 1000, 1)}
        failed = [f"{result['filename']}: {result['error']}" for result in results if "error" in result]
        if failed:  # like predict's exit code 1: the others are still answered
            return JSONResponse({"error": "; ".join(failed), **answer}, status_code=400)
        return answer

    if log is not None:
        app.add_middleware(_RequestLog, log=log)
    return app


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, taken before anything says "serving", so a busy port is one clear error."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does; a listening port still refuses
    try:
        listener.bind((host, port))
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise TlcliError(f"port {port} on {host} is already in use: stop what listens there or choose another --port") from None
        raise TlcliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return listener


class Server:
    """A classifier's app on a socket already listening; ``run`` serves until Ctrl-C."""

    def __init__(self, classifier, app, listener: socket.socket, host: str, port: int):
        self.classifier, self.app, self.listener = classifier, app, listener
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def run(self) -> None:
        import uvicorn

        try:
            uvicorn.Server(uvicorn.Config(self.app, log_level="warning")).run(sockets=[self.listener])
        finally:
            self.listener.close()


def open_server(
    model: str | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "auto",
    max_bytes: int = 10 * 1024 * 1024,
    topk: int = 5,
    concurrency: int = 1,
    queue: int = 8,
    log: Callable[[str], None] | None = None,
) -> Server:
    """Takes the port, then loads the model (a checkpoint, run or .onnx) and builds the app."""
    from tlcli.prediction import load_classifier

    if importlib.util.find_spec("uvicorn") is None:
        raise TlcliError("serving needs the serve extra: pip install 'tlcli[serve]'")
    listener = _listen(host, port)
    try:
        classifier = load_classifier(model, device=device)
        app = create_app(classifier, max_bytes=max_bytes, topk=topk, concurrency=concurrency, queue=queue, log=log)
    except BaseException:
        listener.close()
        raise
    return Server(classifier, app, listener, host, port)
