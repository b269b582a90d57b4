"""tlcli serve: the HTTP API through a real client, and the page in a real headless browser."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from PIL import Image

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

pytestmark = pytest.mark.usefixtures("isolated")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


BODY_TIMEOUT_S = 2
RECEIVING = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One worker and one waiting upload, so that a few concurrent uploads overflow it; bodies
    that take over BODY_TIMEOUT_S seconds to arrive, or arrive beyond RECEIVING at once, refused."""
    from tlcli.core.config import ModelConfig, RunConfig, TrainConfig
    from tests.helpers import train, working_in

    folder = tmp_path_factory.mktemp("serve")
    with working_in(folder):
        run = train(TrainConfig(model=ModelConfig(arch="simple_cnn"), run=RunConfig(epochs=3, out=str(folder / "run"), workers=0))).run_dir
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tlcli", "serve", str(run), "--port", str(port), "--max-upload-mb", "0.1",
         "--concurrency", "1", "--queue", "1", "--body-timeout", str(BODY_TIMEOUT_S), "--receiving", str(RECEIVING)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # Read stderr as it comes: the request log must never fill the pipe and stall the server.
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(process.stderr), daemon=True)
    reader.start()
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
        reader.join(timeout=5)
        pytest.fail(f"server did not start: {''.join(log)}")
    yield url, folder, log
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def digit(server, tmp_path_factory):
    """A real test-split digit as a PNG, and its class."""
    from tlcli.core.config import DataConfig
    from tlcli.data.sources import load_data

    test = load_data(DataConfig("digits")).splits["test"]
    path = tmp_path_factory.mktemp("digit") / "digit.png"
    test.load(0).resize((64, 64)).save(path)
    return path, str(test.labels[0])


def test_health_classes_and_page(server):
    url, _, _ = server
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    assert httpx.get(f"{url}/classes").json()["classes"] == [str(d) for d in range(10)]
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and 'capture="environment"' in page.text


def test_predict_returns_top_k(server, digit):
    url, _, _ = server
    path, label = digit
    answer = httpx.post(f"{url}/predict", files={"image": ("digit.png", path.read_bytes(), "image/png")})
    assert answer.status_code == 200
    (result,) = answer.json()["results"]
    predictions = result["predictions"]
    assert result["filename"] == "digit.png" and "error" not in result
    assert len(predictions) == 5 and predictions[0]["label"] == label
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0001
    assert answer.json()["milliseconds"] > 0


def test_bad_uploads_get_json_4xx_and_the_server_keeps_serving(server, tmp_path):
    url, _, _ = server
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


def test_large_uploads_leave_health_answering_and_excess_uploads_get_503(server, digit, tmp_path):
    """Decoding runs in a worker thread, one at a time with one more waiting: the rest are refused."""
    from tlcli.prediction import predict

    url, folder, _ = server
    path, label = digit
    # A 5000x5000 PNG decodes to 75 MB of RGB, yet its flat blocks compress under the 0.1 MB limit.
    large = tmp_path / "large.png"
    Image.open(path).convert("RGB").resize((5000, 5000), Image.NEAREST).save(large)
    data = large.read_bytes()
    batches = []
    predict([str(large)], checkpoint=str(folder / "run"), on_batch=batches.append)
    ((expected,),) = batches
    uploads = 6
    answers: list[httpx.Response] = []
    start_together = threading.Barrier(uploads)

    def upload(client: httpx.Client) -> None:
        start_together.wait()
        answers.append(client.post("/predict", files={"image": ("large.png", data, "image/png")}))

    # Clients made beforehand: making one (its TLS context) holds this process's GIL for tens of
    # milliseconds, which would be counted against /health's answers.
    clients = [httpx.Client(base_url=url, timeout=120) for _ in range(uploads + 1)]
    health = clients.pop()
    senders = [threading.Thread(target=upload, args=(client,)) for client in clients]
    for sender in senders:
        sender.start()
    latencies = []
    while any(sender.is_alive() for sender in senders):
        sent = time.perf_counter()
        assert health.get("/health").status_code == 200
        latencies.append((time.perf_counter() - sent) * 1000)
        time.sleep(0.02)
    for client in clients + [health]:
        client.close()
    assert max(latencies) < 100, f"/health took {max(latencies):.0f} ms under load (median {sorted(latencies)[len(latencies) // 2]:.0f} ms)"
    assert len(latencies) >= 3, f"the uploads finished before /health was asked ({len(latencies)} times)"
    statuses = Counter(answer.status_code for answer in answers)
    assert set(statuses) == {200, 503} and statuses[200] >= 2, statuses
    for answer in answers:
        if answer.status_code == 503:
            assert "busy" in answer.json()["error"] and int(answer.headers["retry-after"]) > 0
        else:
            top = [(p["label"], p["probability"]) for p in answer.json()["results"][0]["predictions"]]
            assert [name for name, _ in top] == [name for name, _ in expected.top] and top[0][0] == label
            assert [p for _, p in top] == pytest.approx([p for _, p in expected.top], abs=1e-5)


def _digit_pngs(count: int) -> list[tuple[bytes, str]]:
    """The first ``count`` test-split digits of different classes, as PNG bytes with their class."""
    from tlcli.core.config import DataConfig
    from tlcli.data.sources import load_data

    test = load_data(DataConfig("digits")).splits["test"]
    pngs: dict[str, bytes] = {}
    for index in range(len(test)):
        label = str(test.labels[index])
        if label not in pngs:
            buffer = io.BytesIO()
            test.load(index).resize((64, 64)).save(buffer, format="PNG")
            pngs[label] = buffer.getvalue()
        if len(pngs) == count:
            return [(data, label) for label, data in pngs.items()]
    raise AssertionError(f"fewer than {count} classes in the test split")


def test_a_multi_image_post_answers_every_image_in_order_with_topk(server):
    url, _, _ = server
    digits = _digit_pngs(3)  # three different digits, so that the order shows
    names = ["first.png", "second.png", "third.png"]
    alone = [
        httpx.post(f"{url}/predict?topk=3", files={"image": (name, data, "image/png")}).json()["results"][0]["predictions"]
        for name, (data, _) in zip(names, digits)
    ]
    assert len({tuple(p["label"] for p in top) for top in alone}) == 3
    answer = httpx.post(f"{url}/predict?topk=3", files=[("image", (name, data, "image/png")) for name, (data, _) in zip(names, digits)])
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [result["filename"] for result in results] == names
    for result, expected in zip(results, alone):
        assert [p["label"] for p in result["predictions"]] == [p["label"] for p in expected]
        assert [p["probability"] for p in result["predictions"]] == pytest.approx([p["probability"] for p in expected], abs=1e-5)

    # One unusable file among them: it gets its error, the others are still answered, the status says so.
    mixed = httpx.post(f"{url}/predict", files=[("image", ("first.png", digits[0][0], "image/png")),
                                                ("image", ("notes.txt", b"not an image", "text/plain"))])
    assert mixed.status_code == 400
    first, broken = mixed.json()["results"]
    assert len(first["predictions"]) == 5 and "error" not in first
    assert broken["predictions"] == [] and "not a usable image" in broken["error"]
    assert mixed.json()["error"].startswith("notes.txt: not a usable image")


def test_topk_is_clamped_to_the_classes_and_bad_values_get_json_400(server):
    url, _, _ = server
    ((data, _),) = _digit_pngs(1)
    files = {"image": ("digit.png", data, "image/png")}
    for asked, count in (("1", 1), ("10", 10), ("50", 10)):
        answer = httpx.post(f"{url}/predict", params={"topk": asked}, files=files)
        assert answer.status_code == 200 and len(answer.json()["results"][0]["predictions"]) == count, asked
    for bad in ("0", "-1", "2.5", "many", ""):
        answer = httpx.post(f"{url}/predict", params={"topk": bad}, files=files)
        assert answer.status_code == 400 and "topk" in answer.json()["error"], bad


def test_huge_repeated_and_negative_topk_get_json_400(server):
    url, _, _ = server
    ((data, _),) = _digit_pngs(1)
    files = {"image": ("digit.png", data, "image/png")}
    for query in ("topk=" + "9" * 5000, "topk=1000000", "topk=-3", "topk=2&topk=3", "topk=%EF%BC%99"):
        answer = httpx.post(f"{url}/predict?{query}", files=files)
        assert answer.status_code == 400 and "topk" in answer.json()["error"], query[:40]
        assert len(answer.text) < 200, "the value is not echoed whole"
    assert httpx.post(f"{url}/predict?topk=999999", files=files).status_code == 200  # the largest accepted, clamped


def test_too_many_files_are_refused_naming_the_limit_and_the_count(server):
    url, _, _ = server
    answer = httpx.post(f"{url}/predict", files=[("image", (f"{i}.png", b"x", "image/png")) for i in range(1001)])
    assert answer.status_code == 413
    assert answer.json()["error"] == "too many files: 1,001 sent, at most 1,000 per request"


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _send_slowly(port: int, answers: list, *, seconds: float) -> None:
    """An upload whose body trickles in, a byte every 0.2 s, for at most ``seconds``: appends the
    seconds it took to be answered and the answer (b"" if never)."""
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XX\r\n"
            b"Content-Length: 50000\r\n\r\n" b'--XX\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n')
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sender:
        sender.sendall(head)
        sender.settimeout(0.2)
        answer = b""
        while not answer and time.monotonic() - started < seconds:
            try:
                sender.sendall(b"a")
                answer = sender.recv(4096)
            except socket.timeout:
                continue
            except OSError:  # closed once answered: what was answered is still readable
                answer = _rest(sender)
        answers.append((time.monotonic() - started, answer + _rest(sender) if answer else answer))


def _rest(connection: socket.socket) -> bytes:
    """What is left to read until the server closes the connection (it closes after refusals)."""
    data = b""
    connection.settimeout(2)
    try:
        while chunk := connection.recv(4096):
            data += chunk
    except OSError:
        pass
    return data


def _status_and_json(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _slow_senders(port: int, count: int) -> tuple[list[threading.Thread], list]:
    answers: list = []
    senders = [threading.Thread(target=_send_slowly, args=(port, answers), kwargs={"seconds": BODY_TIMEOUT_S + 5}) for _ in range(count)]
    for sender in senders:
        sender.start()
    time.sleep(0.5)  # their headers read, their bodies being received
    return senders, answers


def _all_answered_408_in_time(senders: list[threading.Thread], answers: list) -> None:
    for sender in senders:
        sender.join()
    assert len(answers) == len(senders)
    for seconds, answer in answers:
        status, body = _status_and_json(answer)
        assert status == 408 and f"{BODY_TIMEOUT_S}-second limit" in body["error"]
        assert BODY_TIMEOUT_S - 0.5 < seconds < BODY_TIMEOUT_S + 1.5, seconds


def test_slow_senders_get_408_and_never_keep_others_waiting(server, digit):
    """More trickling uploads than workers and queue together: answered 408 once the body timeout
    has passed, trickle as they may; meanwhile an upload sent whole is classified at once. With
    RECEIVING bodies arriving at once, the next upload gets 503 until the slow ones are gone."""
    url, _, _ = server
    path, label = digit
    files = {"image": ("digit.png", path.read_bytes(), "image/png")}
    senders, answers = _slow_senders(_port(url), 3)  # one worker and one place in the queue
    sent = time.monotonic()
    answer = httpx.post(f"{url}/predict", files=files, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"][0]["predictions"][0]["label"] == label and time.monotonic() - sent < 1.5
    _all_answered_408_in_time(senders, answers)

    senders, answers = _slow_senders(_port(url), RECEIVING)
    busy = httpx.post(f"{url}/predict", files=files)
    assert busy.status_code == 503 and "arriving" in busy.json()["error"] and busy.headers["retry-after"] == "1"
    _all_answered_408_in_time(senders, answers)
    assert httpx.post(f"{url}/predict", files=files).status_code == 200


def test_a_chunked_upload_over_the_limit_is_refused_before_it_is_read(server):
    """No Content-Length to refuse it by: it is counted as it arrives and answered 413 once past
    the 0.1 MB limit; the server stops reading, so the sender cannot push its 64 MB."""
    url, _, _ = server
    total, chunk = 64 * 2**20, b"\0" * 2**16
    sent = 0

    def send(connection: socket.socket) -> None:
        nonlocal sent
        part = b'--XX\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n\r\n'
        try:
            connection.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XX\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (len(part), part))
            while sent < total:
                connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            connection.sendall(b"0\r\n\r\n")
        except OSError:  # the server closed the connection
            pass

    with socket.create_connection(("127.0.0.1", _port(url))) as connection:
        sender = threading.Thread(target=send, args=(connection,))
        sender.start()
        connection.settimeout(20)
        answer = connection.recv(4096) + _rest(connection)
        sender.join(timeout=20)
    status, body = _status_and_json(answer)
    assert status == 413 and "104,857-byte limit" in body["error"]
    assert sent < 16 * 2**20, f"{sent / 2**20:.0f} MB of {total / 2**20:.0f} MB were taken before the refusal"


# What the CLI's entry point may install before a command runs: SIGTERM and SIGHUP raising a
# KeyboardInterrupt, so that training reports them like Ctrl-C.
_RAISING_HANDLERS = """
import signal
class Terminated(KeyboardInterrupt):
    pass
def terminate(signum, frame):
    raise Terminated(signal.Signals(signum).name)
for signum in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(signum, terminate)
from tlcli.cli import run
run()
"""


@pytest.mark.parametrize(("stop", "handlers"), [(signal.SIGTERM, "default"), (signal.SIGHUP, "raising"), (signal.SIGINT, "default")],
                         ids=["SIGTERM", "SIGHUP-raising", "SIGINT"])
def test_a_stop_signal_ends_serve_with_stopped_and_exit_0(server, stop, handlers):
    """Whatever handled the signal before serve ran (death for SIGTERM and SIGHUP, or a raised
    KeyboardInterrupt, Python's own for SIGINT): an upload still arriving is answered 503 at
    once rather than after its 30 s, then "stopped", exit 0, no traceback, the port free."""
    _, folder, _ = server
    port = _free_port()
    command = [sys.executable, "-c", _RAISING_HANDLERS] if handlers == "raising" else [sys.executable, "-m", "tlcli"]
    process = subprocess.Popen([*command, "serve", str(folder / "run"), "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        answers: list = []
        sender = threading.Thread(target=_send_slowly, args=(port, answers), kwargs={"seconds": 10})
        sender.start()
        time.sleep(0.5)
        process.send_signal(stop)
        stderr = process.communicate(timeout=10)[1]
        sender.join()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert stderr.splitlines()[-1] == f"stopped ({stop.name})" and "Traceback" not in stderr, stderr
    ((seconds, answer),) = answers
    status, body = _status_and_json(answer)
    assert status == 503 and body["error"] == "the server is stopping" and seconds < 3
    with socket.socket() as probe:  # the port is free for the next server (as it binds: TIME_WAIT allowed)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()


def test_each_request_is_logged_on_one_line(server):
    url, _, log = server
    ((data, _),) = _digit_pngs(1)
    httpx.get(f"{url}/health")
    httpx.post(f"{url}/predict?topk=2", files=[("image", ("a.png", data, "image/png")), ("image", ("b.png", data, "image/png"))])
    httpx.get(f"{url}/nowhere")
    stamp, took = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", r" \d+\.\d ms "
    wanted = [stamp + "GET /health 200" + took + "0 images$", stamp + r"POST /predict\?topk=2 200" + took + "2 images$",
              stamp + "GET /nowhere 404" + took + "0 images$"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the line is written just after the answer is sent
        lines = [line.rstrip("\n") for line in log]
        if all(any(re.match(want, line) for line in lines) for want in wanted):
            break
        time.sleep(0.05)
    for want in wanted:
        assert any(re.match(want, line) for line in lines), (want, lines[-10:])
    assert lines[0].startswith("serving ")


def test_a_busy_port_is_one_error_and_exit_1_before_serving(server, run_cli):
    url, folder, _ = server
    port = url.rsplit(":", 1)[1]  # the module's server holds it
    result = run_cli("serve", folder / "run", "--port", port)
    assert result.code == 1
    assert result.stderr.splitlines() == [f"Error: port {port} on 127.0.0.1 is already in use: stop what listens there or choose another --port"]
    assert httpx.get(f"{url}/health").status_code == 200


@pytest.mark.parametrize("option", [("--concurrency", "0"), ("--queue", "-1"), ("--receiving", "0"), ("--body-timeout", "0")])
def test_serve_refuses_bad_limits_before_loading_a_model(run_cli, option):
    result = run_cli("serve", *option)
    assert result.code == 2 and f"Invalid value for '{option[0]}'" in result.stderr


def test_the_page_classifies_an_uploaded_photo_in_a_real_browser(server, digit, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (make test installs it when it can)")
    playwright = pytest.importorskip("playwright.sync_api")
    url, folder, _ = server
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
