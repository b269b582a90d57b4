"""``serve``: an HTTP API and a phone-friendly page that classify an uploaded or camera photo.

Built on FastAPI (the ``serve`` extra). Bad uploads (empty, not an image, too large, a
decompression bomb) get a JSON 4xx answer and the server keeps serving. Decoding, preprocessing
and inference run in worker threads, a few at a time, so the event loop stays free to answer
``/health`` and to turn away, with 503, uploads beyond what may wait.
"""


import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

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


async def _read_upload(request, max_bytes: int) -> bytes:
    """The bytes of the multipart field ``image``; raises _Refused for anything else."""
    try:
        form = await request.form(max_part_size=max_bytes + 1)
    except Exception:  # the multipart parser rejects oversized and malformed bodies alike
        raise _Refused(400, "send the image as multipart/form-data in a field named 'image'") from None
    upload = form.get("image")
    if upload is None or isinstance(upload, str):
        raise _Refused(400, "no file in the 'image' field")
    data = await upload.read(max_bytes + 1)
    if not data:
        raise _Refused(400, "the uploaded file is empty")
    if len(data) > max_bytes:
        raise _Refused(413, f"upload larger than the {max_bytes:,}-byte limit")
    return data


def create_app(classifier, *, max_bytes: int = 10 * 1024 * 1024, topk: int = 5, concurrency: int = 1, queue: int = 8):
    """The FastAPI app; ``concurrency`` uploads are classified at once and ``queue`` more may wait."""
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
    k = min(topk, len(classifier.classes))

    def classify(data: bytes) -> list[dict[str, Any]]:
        """Decode, preprocess and run the model: the slow, memory-hungry part, off the event loop."""
        try:
            image = open_image_bytes(data, draft_size=classifier.draft_size)
        except BadImageError as exc:
            raise _Refused(400, f"not a usable image: {exc}") from None
        values, indices = classifier(classifier.transform(image).unsqueeze(0))[0].topk(k)
        return [{"label": classifier.classes[int(i)], "probability": float(v)} for v, i in zip(values, indices)]

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
            declared = request.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
                raise _Refused(413, f"upload larger than the {max_bytes:,}-byte limit")
            limit.admit()
            try:
                data = await _read_upload(request, max_bytes)
                predictions = await limit.run(classify, data)
            finally:
                limit.release()
        except _Refused as refused:
            return JSONResponse({"error": str(refused)}, status_code=refused.status, headers=refused.headers)
        return {"predictions": predictions, "milliseconds": round((time.perf_counter() - started) * 1000, 1)}

    return app
