"""``serve``: an HTTP API and a phone-friendly page that classify uploaded or camera photos.

Built on FastAPI (the ``serve`` extra). One POST may carry several images, each answered in
turn. Bad uploads (empty, not an image, too large, too slow, a decompression bomb) get a JSON
4xx answer and the server keeps serving (``uploads`` reads and bounds them). Decoding,
preprocessing and inference run in worker threads, a few at a time, so the event loop stays free
to answer ``/health`` and to turn away, with 503, uploads beyond what may wait.
"""


import errno
import importlib.util
import signal
import socket
import threading
import time
from contextlib import asynccontextmanager, contextmanager
from importlib import resources
from typing import Any, Callable

from tlcli.data.images import BadImageError, open_image_bytes
from tlcli.core.errors import TlcliError
from tlcli.serving.uploads import Refused, UploadGate, form_boundary, receive_uploads, requested_topk
from tlcli.core.stopping import TERMINATING, not_ignored


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
    receiving: int = 32,
    body_timeout: float = 30.0,
    log: Callable[[str], None] | None = None,
):
    """The FastAPI app; ``receiving`` upload bodies arrive at once, each within ``body_timeout``
    seconds, then ``concurrency`` uploads are classified at once and ``queue`` more may wait;
    ``log``, when given, receives one line per request. ``app.state.uploads.stopping`` is set
    when the server shuts down."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import HTMLResponse, JSONResponse
    except ImportError:
        raise TlcliError("serving needs the serve extra: pip install 'tlcli[serve]'") from None

    gate = UploadGate(concurrency=concurrency, queue=queue, receiving=receiving)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        gate.workers.shutdown(cancel_futures=True)

    app = FastAPI(title="tlcli", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.uploads = gate
    _add_pages(app, classifier, HTMLResponse)

    @app.post("/predict")
    async def predict(request: Request):
        started = time.perf_counter()
        try:
            k = requested_topk(request.query_params, topk, len(classifier.classes))
            boundary = form_boundary(request.headers, max_bytes)
            with gate.receive_slot():  # receiving is not model work: it takes no worker's place
                uploads = await receive_uploads(
                    request, boundary, max_bytes=max_bytes, timeout=body_timeout, stopping=gate.stopping
                )
            request.state.images = len(uploads)
            with gate.classify_slot():
                results = await gate.run(_classify, classifier, uploads, k)
        except Refused as refused:
            return JSONResponse({"error": str(refused)}, status_code=refused.status, headers=refused.headers)
        answer: dict[str, Any] = {"results": results, "milliseconds": round((time.perf_counter() - started) * 1000, 1)}
        failed = [f"{result['filename']}: {result['error']}" for result in results if "error" in result]
        if failed:  # like predict's exit code 1: the others are still answered
            return JSONResponse({"error": "; ".join(failed), **answer}, status_code=400)
        return answer

    if log is not None:
        app.add_middleware(_RequestLog, log=log)
    return app


def _add_pages(app, classifier, html_response) -> None:
    """GET /, /health and /classes: what the server holds, answered at once."""
    page = resources.files("tlcli.serving").joinpath("page.html").read_text()

    @app.get("/", response_class=html_response)
    def index() -> str:
        return page

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": str(classifier.source), "classes": len(classifier.classes)}

    @app.get("/classes")
    def classes() -> dict[str, Any]:
        return {"classes": classifier.classes}


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


# What stops a server: Ctrl-C, and what supervisors and a closed terminal send.

class Server:
    """A classifier's app on a socket already listening; ``run`` serves until a stop signal."""

    def __init__(self, classifier, app, listener: socket.socket, host: str, port: int):
        self.classifier, self.app, self.listener = classifier, app, listener
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def run(self) -> str | None:
        """Serves until SIGINT, SIGTERM or SIGHUP, then stops gracefully and returns the signal's
        name: no new connections, bodies still arriving get 503, classifications under way finish."""
        import uvicorn

        stopping = self.app.state.uploads.stopping

        class _Uvicorn(uvicorn.Server):
            async def shutdown(self, sockets=None):
                stopping.set()
                await super().shutdown(sockets=sockets)

        server = _Uvicorn(uvicorn.Config(self.app, log_level="warning"))
        received: list[int] = []
        try:
            with _stopping_on_signals(server, received):
                server.run(sockets=[self.listener])
        finally:
            self.listener.close()
        return signal.Signals(received[0]).name if received else None


@contextmanager
def _stopping_on_signals(server, received: list[int]):
    """While serving, each stop signal asks uvicorn for a graceful stop and nothing else; a
    second one stops without waiting for open connections. uvicorn handles SIGINT and SIGTERM
    itself while it serves, then raises the signal again for the handler it found, which is this
    one: so the stop ends in a return (exit 0), not in the default death by SIGTERM (143) nor in
    a KeyboardInterrupt from the CLI's own handlers. SIGHUP, which uvicorn leaves, comes here
    directly. The handlers in place before come back afterwards."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def stop(signum, _frame):
        received.append(signum)
        server.force_exit = server.should_exit
        server.should_exit = True

    previous = {signum: signal.signal(signum, stop) for signum in not_ignored(TERMINATING)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def open_server(
    model: str | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "auto",
    log: Callable[[str], None] | None = None,
    **limits,
) -> Server:
    """Takes the port, then loads the model (a checkpoint, run or .onnx) and builds the app;
    ``limits`` are ``create_app``'s (upload size, top-k, workers, queue, bodies, body timeout)."""
    from tlcli.prediction import load_classifier

    if importlib.util.find_spec("uvicorn") is None:
        raise TlcliError("serving needs the serve extra: pip install 'tlcli[serve]'")
    listener = _listen(host, port)
    try:
        classifier = load_classifier(model, device=device)
        app = create_app(classifier, log=log, **limits)
    except BaseException:
        listener.close()
        raise
    return Server(classifier, app, listener, host, port)
