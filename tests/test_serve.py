"""tlcli serve: the HTTP API through a real client, and the page in a real headless browser."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from PIL import Image

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tlcli.config import ModelConfig, RunConfig, TrainConfig
    from tlcli.training import train

    folder = tmp_path_factory.mktemp("serve")
    run = train(TrainConfig(model=ModelConfig(arch="simple_cnn"), run=RunConfig(epochs=3, out=str(folder / "run"), workers=0))).run_dir
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tlcli", "serve", str(run), "--port", str(port), "--max-upload-mb", "0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail(f"server did not start: {process.stderr.read()}")
    yield url, folder
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def digit(server, tmp_path_factory):
    """A real test-split digit as a PNG, and its class."""
    from tlcli.config import DataConfig
    from tlcli.data.sources import load_data

    test = load_data(DataConfig("digits")).splits["test"]
    path = tmp_path_factory.mktemp("digit") / "digit.png"
    test.load(0).resize((64, 64)).save(path)
    return path, str(test.labels[0])


def test_health_classes_and_page(server):
    url, _ = server
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    assert httpx.get(f"{url}/classes").json()["classes"] == [str(d) for d in range(10)]
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and 'capture="environment"' in page.text


def test_predict_returns_top_k(server, digit):
    url, _ = server
    path, label = digit
    answer = httpx.post(f"{url}/predict", files={"image": ("digit.png", path.read_bytes(), "image/png")})
    assert answer.status_code == 200
    predictions = answer.json()["predictions"]
    assert len(predictions) == 5 and predictions[0]["label"] == label
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0001
    assert answer.json()["milliseconds"] > 0


def test_bad_uploads_get_json_4xx_and_the_server_keeps_serving(server, tmp_path):
    url, _ = server
    side = 12_000
    Image.new("1", (side, side)).save(tmp_path / "bomb.png", optimize=True)
    cases = [
        ({"image": ("notes.txt", b"hello, not an image", "text/plain")}, 400, "not a usable image"),
        ({"image": ("empty.png", b"", "image/png")}, 400, "empty"),
        ({"other": ("x.png", b"abc", "image/png")}, 400, "'image' field"),
        ({"image": ("big.png", os.urandom(200_000), "image/png")}, 413, "limit"),
        ({"image": ("bomb.png", (tmp_path / "bomb.png").read_bytes(), "image/png")}, 400, "decompression bomb"),
    ]
    for files, status, message in cases:
        answer = httpx.post(f"{url}/predict", files=files)
        assert answer.status_code == status, files
        assert message in answer.json()["error"]
    assert httpx.post(f"{url}/predict", content=b"raw bytes", headers={"content-type": "application/octet-stream"}).status_code == 400
    assert httpx.get(f"{url}/health").status_code == 200


def test_the_page_classifies_an_uploaded_photo_in_a_real_browser(server, digit, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (make test installs it when it can)")
    playwright = pytest.importorskip("playwright.sync_api")
    url, folder = server
    path, label = digit
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page(viewport={"width": 420, "height": 820})
        page.goto(url)
        page.set_input_files("#file", str(path))
        page.wait_for_selector("#results .row .label", timeout=20_000)
        labels = page.locator("#results .row .label").all_inner_texts()
        status = page.inner_text("#status")
        page.screenshot(path=str(folder / "page.png"), full_page=True)
        browser.close()
    assert labels[0] == label and len(labels) == 5
    assert "ms" in status
    assert (folder / "page.png").stat().st_size > 5_000
