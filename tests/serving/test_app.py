"""``tlcli.serving.create_app``: the FastAPI app around a checkpoint's classifier, called through
starlette's TestClient (no server, no socket): the page, /health and /classes, /predict answering
each uploaded image with the classifier's own top classes, and bad uploads answered with a JSON
4xx while the app keeps serving; and the request log's one line per request."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402 - after the serve extra is known to be there

from tlcli.prediction.classifiers import load_classifier  # noqa: E402
from tlcli.serving import create_app  # noqa: E402
from tlcli.serving.uploads import FORM_HELP  # noqa: E402


@pytest.fixture(scope="module")
def classifier(tiny_run):
    """The classifier of the session's tiny run (an mlp on twelve 8x8 images of classes a and b)."""
    return load_classifier(str(tiny_run.run_dir), device="cpu")

@pytest.fixture(scope="module")
def client(classifier):
    with TestClient(create_app(classifier, max_bytes=4096, topk=5)) as client:
        yield client


def _png(seed: int) -> bytes:
    """A 12x10 photo of random pixels: not the model's 8x8, so the upload is resized as any is."""
    pixels = np.random.default_rng(seed).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _expected(classifier, data: bytes, k: int) -> list[tuple[str, float]]:
    """What the classifier itself says of the image, most likely first."""
    probabilities = classifier(classifier.transform(Image.open(io.BytesIO(data)).convert("RGB")).unsqueeze(0))[0]
    values, indices = probabilities.topk(k)
    return [(classifier.classes[int(i)], float(v)) for v, i in zip(values, indices)]


def _labels_and_probabilities(result: dict) -> list[tuple[str, float]]:
    return [(p["label"], p["probability"]) for p in result["predictions"]]


def test_the_page_health_and_classes_say_what_the_server_holds(client, classifier):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html") and "<html" in page.text.lower()
    assert client.get("/health").json() == {"status": "ok", "model": str(classifier.source), "classes": 2}
    assert client.get("/classes").json() == {"classes": ["a", "b"]}


def test_each_uploaded_image_gets_the_classifiers_own_top_classes_in_order(client, classifier):
    images = [("image", ("first.png", _png(1), "image/png")), ("image", ("second.png", _png(2), "image/png"))]

    answer = client.post("/predict", files=images)

    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [r["filename"] for r in results] == ["first.png", "second.png"]
    for result, (_, (_, data, _)) in zip(results, images):
        got, want = _labels_and_probabilities(result), _expected(classifier, data, 2)  # topk 5, clamped to 2 classes
        assert [label for label, _ in got] == [label for label, _ in want]
        assert [p for _, p in got] == pytest.approx([p for _, p in want], abs=1e-6)
    assert answer.json()["milliseconds"] >= 0


def test_topk_in_the_query_limits_the_predictions(client, classifier):
    answer = client.post("/predict?topk=1", files={"image": ("one.png", _png(3), "image/png")})

    assert answer.status_code == 200
    assert [p["label"] for p in answer.json()["results"][0]["predictions"]] == [_expected(classifier, _png(3), 1)[0][0]]


def test_a_bad_image_is_a_400_that_still_answers_the_good_ones(client):
    files = [("image", ("good.png", _png(4), "image/png")), ("image", ("text.png", b"not an image", "image/png")),
             ("image", ("empty.png", b"", "image/png"))]

    answer = client.post("/predict", files=files)

    body = answer.json()
    assert answer.status_code == 400
    assert len(body["results"][0]["predictions"]) == 2 and "error" not in body["results"][0]
    assert body["results"][1] == {"filename": "text.png", "predictions": [], "error": "not a usable image: not an image PIL can read"}
    assert body["results"][2]["error"] == "the uploaded file is empty"
    assert body["error"].startswith("text.png: not a usable image") and "empty.png: the uploaded file is empty" in body["error"]


@pytest.mark.parametrize(("request_options", "status", "message"), [
    ({"json": {"image": "base64..."}}, 400, FORM_HELP),
    ({"files": {"photo": ("a.png", b"x", "image/png")}}, 400, "no file in the 'image' field"),
    ({"files": {"image": ("big.png", b"x" * 5000, "image/png")}}, 413, "upload larger than the 4,096-byte limit"),
    ({"files": {"image": ("a.png", b"x", "image/png")}, "params": {"topk": "many"}}, 400, "topk must be a whole number"),
])
def test_a_refused_upload_is_a_json_4xx_and_the_app_keeps_serving(client, request_options, status, message):
    answer = client.post("/predict", **request_options)

    assert answer.status_code == status and message in answer.json()["error"]
    assert answer.headers["connection"] == "close"  # the body may be unread: the client is not kept
    assert client.get("/health").status_code == 200


def test_the_request_log_has_one_line_per_request_with_its_status_and_images(classifier):
    lines: list[str] = []
    with TestClient(create_app(classifier, log=lines.append)) as client:
        client.get("/health")
        client.post("/predict?topk=1", files=[("image", ("a.png", _png(5), "image/png")), ("image", ("b.png", _png(6), "image/png"))])
        client.post("/predict", content=b"nothing")

    assert len(lines) == 3
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d GET /health 200 [\d.]+ ms 0 images", lines[0])
    assert re.search(r"POST /predict\?topk=1 200 [\d.]+ ms 2 images$", lines[1])
    assert re.search(r"POST /predict 400 [\d.]+ ms 0 images$", lines[2])


def test_the_app_s_workers_stop_with_it(classifier):
    app = create_app(classifier)
    with TestClient(app):
        pass

    with pytest.raises(RuntimeError, match="after shutdown"):
        app.state.uploads.workers.submit(print)
