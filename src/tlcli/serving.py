"""``serve``: an HTTP API and a phone-friendly page that classify an uploaded or camera photo.

Built on FastAPI (the ``serve`` extra). Bad uploads (empty, not an image, too large, a
decompression bomb) get a JSON 4xx answer and the server keeps serving.
"""


import time
from importlib import resources
from typing import Any

import torch

from tlcli.data.images import BadImageError, open_image_bytes
from tlcli.errors import TlcliError


def create_app(classifier, *, max_bytes: int = 10 * 1024 * 1024, topk: int = 5):
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import HTMLResponse, JSONResponse
    except ImportError:
        raise TlcliError("serving needs the serve extra: pip install 'tlcli[serve]'") from None

    app = FastAPI(title="tlcli", docs_url=None, redoc_url=None)
    page = resources.files("tlcli").joinpath("page.html").read_text()
    k = min(topk, len(classifier.classes))

    def problem(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

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
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
            return problem(413, f"upload larger than the {max_bytes:,}-byte limit")
        try:
            form = await request.form(max_part_size=max_bytes + 1)
        except Exception:  # the multipart parser rejects oversized and malformed bodies alike
            return problem(400, "send the image as multipart/form-data in a field named 'image'")
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            return problem(400, "no file in the 'image' field")
        data = await upload.read(max_bytes + 1)
        if not data:
            return problem(400, "the uploaded file is empty")
        if len(data) > max_bytes:
            return problem(413, f"upload larger than the {max_bytes:,}-byte limit")
        try:
            image = open_image_bytes(data, draft_size=classifier.draft_size)
        except BadImageError as exc:
            return problem(400, f"not a usable image: {exc}")
        with torch.no_grad():
            probabilities = classifier(classifier.transform(image).unsqueeze(0))[0]
        values, indices = probabilities.topk(k)
        return {
            "predictions": [{"label": classifier.classes[int(i)], "probability": float(v)} for v, i in zip(values, indices)],
            "milliseconds": round((time.perf_counter() - started) * 1000, 1),
        }

    return app
