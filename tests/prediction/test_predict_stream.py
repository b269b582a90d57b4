"""tlcli predict at scale: results streamed batch by batch, inputs from lists and stdin, decoding
workers, --output/--resume after a kill, and the exit codes a cron job reads."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlcli.core.config import ModelConfig, RunConfig, TrainConfig
from tlcli.prediction import predict
from tests.helpers import train

HEADER = "path,rank,label,probability,error\n"


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """An mlp trained on the real digits, and 400 of them as PNG files in class folders."""
    from sklearn.datasets import load_digits

    base = tmp_path_factory.mktemp("predict-stream")
    loaded = load_digits()
    for index in range(400):
        pixels = (loaded.images[index] * 255 / 16).astype(np.uint8)
        target = base / "images" / str(loaded.target[index]) / f"{index:04d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, "L").save(target)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(base)
        run = train(TrainConfig(model=ModelConfig(arch="mlp", weights="none"), run=RunConfig(epochs=3, out=str(base / "run"), workers=0)))
    return {"base": base, "images": base / "images", "run": str(run.run_dir)}


def _text(digits, inputs, **options) -> str:
    stream = io.StringIO()
    predict([str(i) for i in inputs], checkpoint=digits["run"], stream=stream, **options)
    return stream.getvalue()


def test_every_format_and_worker_count_gives_the_same_rows_in_input_order(digits, tmp_path):
    images = digits["images"]
    listed = tmp_path / "list.txt"
    listed.write_text(f"{images / '3' / '0003.png'}\n\n{tmp_path / 'gone.png'}\n{images / '1' / '0001.png'}\n")
    inputs = [images / "7", images / "2" / "0002.png", str(images / "9" / "00*.png")]
    csv_text = _text(digits, inputs, from_list=str(listed), topk=2, batch_size=4, workers=0)
    assert csv_text == _text(digits, inputs, from_list=str(listed), topk=2, batch_size=4, workers=2)
    rows = list(csv.reader(io.StringIO(csv_text)))
    assert rows[0] == HEADER.strip().split(",")
    expected = [*sorted(str(p) for p in (images / "7").glob("*.png")), str(images / "2" / "0002.png"),
                *sorted(str(p) for p in (images / "9").glob("00*.png")), str(images / "3" / "0003.png"), str(tmp_path / "gone.png"),
                str(images / "1" / "0001.png")]
    assert list(dict.fromkeys(row[0] for row in rows[1:])) == expected
    assert [row[4] for row in rows[1:] if row[0] == str(tmp_path / "gone.png")] == ["no such file or folder"]
    lines = [json.loads(line) for line in _text(digits, inputs, from_list=str(listed), topk=2, format="jsonl", batch_size=4, workers=1).splitlines()]
    array = json.loads(_text(digits, inputs, from_list=str(listed), topk=2, format="json", batch_size=4, workers=1))
    assert lines == array and [entry["path"] for entry in lines] == expected
    for entry in lines:
        top = [(p["label"], f"{p['probability']:.6f}") for p in entry["predictions"]]
        assert top == [(row[2], row[3]) for row in rows[1:] if row[0] == entry["path"] and row[1]]
    right = sum(entry["predictions"][0]["label"] == Path(entry["path"]).parent.name for entry in lines if not entry["error"])
    assert right / (len(lines) - 1) >= 0.8  # the digits are recognised, not just listed


def test_each_batch_is_in_the_file_when_the_job_moves_on(digits, tmp_path):
    out = tmp_path / "out.csv"
    seen: list[int] = []

    def on_batch(batch):
        seen.append(out.read_text().count("\n") - 1)

    summary = predict([str(digits["images"] / "0")], checkpoint=digits["run"], output=out, topk=1, batch_size=5, workers=1, on_batch=on_batch)
    assert seen == list(range(5, summary.images, 5)) + [summary.images]
    assert summary.images == len(list((digits["images"] / "0").glob("*.png")))


def test_one_image_on_stdin_and_a_list_on_stdin(digits):
    image = digits["images"] / "5" / "0005.png"
    from_stdin = _text(digits, ["-"], stdin=io.BytesIO(image.read_bytes()), topk=3)
    from_file = _text(digits, [image], topk=3)
    assert from_stdin == from_file.replace(str(image), "-")
    listed = _text(digits, [], from_list="-", stdin=io.BytesIO(f"{image}\n-\n".encode()), topk=1)
    assert listed.splitlines()[1:] == [from_file.splitlines()[1], "-,,,,'-' inside a list is not an image"]


def _cut_at(text: str, position: int, path: Path) -> None:
    path.write_bytes(text.encode()[:position])


def test_resume_cuts_a_torn_last_row_wherever_the_write_stopped(digits, tmp_path):
    inputs = [digits["images"] / "4", tmp_path / "missing.png"]
    for format, suffix in (("csv", ".csv"), ("jsonl", ".jsonl")):
        whole = _text(digits, inputs, topk=3, batch_size=4, workers=0, format=format)
        data = whole.encode()
        out = tmp_path / f"out{suffix}"
        for position in sorted({0, 5, len(HEADER), *random.Random(1).sample(range(len(data)), 12), len(data) - 1, len(data)}):
            out.write_bytes(data[:position])
            summary = predict([str(i) for i in inputs], checkpoint=digits["run"], output=out, resume=True, topk=3, batch_size=4, workers=0, format=format)
            assert out.read_bytes() == data, (format, position)
            assert summary.skipped + summary.images == len(list((digits["images"] / "4").glob("*.png"))) + 1


def test_resume_never_changes_a_file_tlcli_did_not_write(digits, tmp_path, run_cli):
    image = digits["images"] / "8" / "0008.png"
    top3 = _text(digits, [image], topk=3)
    foreign = {"mine.csv": "name,score\nx,1\n", "mine.jsonl": '{"a": 1}\n', "unterminated.jsonl": '{"a": 1}', "short.csv": HEADER + "a.png,1\n",
               "nul.csv": HEADER + "a\0.png,1,3,0.5,\n" * 3, "top3.csv": top3 + top3.partition("\n")[2],
               "other-tool.jsonl": '{"path": "x.png", "predictions": [], "error": "no", "score": 1}\n'}
    for name, content in foreign.items():
        target = tmp_path / name
        target.write_text(content)
        refused = run_cli("predict", image, "-c", digits["run"], "--output", target, "--resume", "--topk", "2")
        assert refused.code == 1 and "--resume continues only a file tlcli predict wrote" in refused.stderr, refused.stderr
        again = run_cli("predict", image, "-c", digits["run"], "--output", target)
        assert again.code == 1 and "already exists" in again.stderr
        assert target.read_text() == content
    import fcntl

    with open(tmp_path / "busy.csv", "w") as busy:  # another job writing it
        fcntl.flock(busy, fcntl.LOCK_EX)
        second = run_cli("predict", image, "-c", digits["run"], "--output", tmp_path / "busy.csv", "--resume")
        assert second.code == 1 and "being written by another tlcli predict" in second.stderr
    (tmp_path / "folder.csv").mkdir()
    assert "is a folder" in run_cli("predict", image, "-c", digits["run"], "-o", tmp_path / "folder.csv").stderr
    os.mkfifo(tmp_path / "nobody-reads")
    no_reader = run_cli("predict", image, "-c", digits["run"], "--csv", "-o", tmp_path / "nobody-reads")
    assert no_reader.code == 1 and len(no_reader.stderr.splitlines()) == 1


@pytest.mark.parametrize("arguments, message", [
    (["x.png", "--resume"], "--resume continues a file"),
    (["x.png", "--csv", "--json"], "choose one of --csv, --jsonl and --json"),
    (["x.png", "--output", "out.txt"], "say the format of out.txt"),
    (["x.png", "--output", "out.json", "--resume"], "not --json"),
    (["-", "--from-list", "-"], "stdin can be read once"),
    ([], "give images to classify"),
    (["x.png", "--workers", "-1"], "--workers"),
    (["x.png", "--model", "m.onnx"], "not both"),
])
def test_usage_errors_exit_2_before_anything_is_read(run_cli, arguments, message):
    result = run_cli("predict", *arguments, "-c", "no-such-run")
    assert result.code == 2 and message in result.stderr, result.stderr


def test_a_fifo_or_device_as_output_gets_the_whole_stream_header_included(digits, tmp_path):
    import threading

    fifo = tmp_path / "results"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    time.sleep(0.1)  # the reader is waiting at the other end
    predict([str(digits["images"] / "3")], checkpoint=digits["run"], output=fifo, topk=1, workers=0)
    reader.join(timeout=30)
    assert received[0].decode() == _text(digits, [digits["images"] / "3"], topk=1, workers=0)


def test_a_pipe_as_an_image_a_list_with_a_bom_and_names_that_are_not_utf8(digits, tmp_path):
    import threading

    image = digits["images"] / "4" / "0004.png"
    pipe = tmp_path / "image-pipe"
    os.mkfifo(pipe)
    writer = threading.Thread(target=lambda: pipe.write_bytes(image.read_bytes()))
    writer.start()
    piped = _text(digits, [pipe], topk=2)
    writer.join(timeout=30)
    assert piped == _text(digits, [image], topk=2).replace(str(image), str(pipe))
    listed = tmp_path / "list.txt"
    listed.write_bytes(b"\xef\xbb\xbf" + str(image).encode() + b"\n")  # a list saved by Notepad
    assert _text(digits, [], from_list=str(listed), topk=2) == _text(digits, [image], topk=2)
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/bad\xff.png"))
    odd.write_bytes(image.read_bytes())
    for format in ("jsonl", "json"):
        text = _text(digits, [odd], topk=1, format=format)
        text.encode("utf-8")  # valid UTF-8, and the name comes back byte for byte
        entries = json.loads(text) if format == "json" else [json.loads(text)]
        assert os.fsencode(entries[0]["path"]) == os.fsencode(odd)


def test_exit_codes_and_endless_or_odd_inputs(digits, run_cli, tmp_path):
    good = digits["images"] / "6" / "0006.png"
    assert run_cli("predict", good, "-c", digits["run"], "--csv").code == 0
    (tmp_path / "broken.png").write_bytes(b"not a png")
    partly = run_cli("predict", good, tmp_path / "broken.png", "/dev/zero", "-c", digits["run"], "--csv")
    assert partly.code == 3 and partly.stdout.count("\n") == 1 + 5 + 2
    assert run_cli("predict", tmp_path / "nothing*.png", "-c", digits["run"]).code == 1
    endless = run_cli("predict", "--from-list", "/dev/zero", "-c", digits["run"], "--csv")
    assert endless.code == 1 and "not a list of paths" in endless.stderr and len(endless.stderr.splitlines()) == 1
    os.mkfifo(tmp_path / "list-fifo")  # nobody writes: an empty list at once, not a hang
    empty = run_cli("predict", "--from-list", tmp_path / "list-fifo", "-c", digits["run"])
    assert empty.code == 1 and "no images to predict" in empty.stderr


def _command(digits, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tlcli", "predict", str(digits["images"]), "--from-list", "-", "-c", digits["run"], "--output", str(out),
            "--topk", "3", "--batch-size", "8", "--workers", "1", *extra]


def _run(digits, out: Path, listed: bytes, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(digits, out, *extra), input=listed, capture_output=True, timeout=120)


def test_a_job_killed_at_any_moment_resumes_to_the_uninterrupted_result(digits, tmp_path):
    """SIGTERM stops between batches with exit 143, SIGUSR1 after the current batch with 138, both
    leaving whole rows; SIGKILL at a random moment may tear a row; either way --resume ends with
    the same file as an uninterrupted run, byte for byte."""
    listed = "".join(f"{p}\n" for p in sorted(digits["images"].rglob("*.png"))[:200]).encode()
    reference = tmp_path / "reference.csv"
    started = time.perf_counter()
    assert _run(digits, reference, listed).returncode == 0
    duration = time.perf_counter() - started
    for attempt, (how, code) in enumerate(((signal.SIGTERM, 143), (signal.SIGUSR1, 138), (signal.SIGKILL, None))):
        out = tmp_path / f"killed{attempt}.csv"
        job = subprocess.Popen(_command(digits, out, "--resume"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        job.stdin.write(listed)
        job.stdin.close()
        job.stdin = None  # written and closed: communicate() must not flush it
        if how == signal.SIGKILL:
            time.sleep(random.Random(os.getpid()).uniform(0, duration))
        else:  # once rows are being written, where tlcli's handlers are in place
            deadline = time.monotonic() + 60
            while (not out.exists() or out.stat().st_size <= len(HEADER)) and job.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
        job.send_signal(how)
        stderr = job.communicate(timeout=60)[1].decode()
        if code is not None and job.returncode != 0:  # 0: the job ended before the signal came
            assert job.returncode == code and "--resume" in stderr and "Traceback" not in stderr, stderr
            assert out.read_text().endswith("\n")
        resumed = _run(digits, out, listed, "--resume")
        assert resumed.returncode == 0, resumed.stderr.decode()
        assert out.read_bytes() == reference.read_bytes(), (how, attempt)


class _ClosedByReader(io.StringIO):
    """stdout whose reader (`| head -3`) went away after the first write."""

    def write(self, text):
        if self.tell():
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)


def test_a_reader_that_closes_the_output_ends_the_job_quietly_with_141(digits, run_cli, monkeypatch):
    monkeypatch.setattr(sys, "stdout", _ClosedByReader())
    result = run_cli("predict", digits["images"] / "1", "-c", digits["run"], "--csv", "--batch-size", "2")
    assert result.code == 141 and "Error" not in result.stderr


def test_names_with_commas_quotes_and_newlines_survive_a_resume(digits, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    sources = sorted((digits["images"] / "2").glob("*.png"))
    for source, name in zip(sources, ['a,b.png', 'say "hi".png', 'two\nlines.png', 'é ü.png']):
        (folder / name).write_bytes(source.read_bytes())
    whole = _text(digits, [folder], topk=2, batch_size=1, workers=0)
    assert len(list(csv.reader(io.StringIO(whole)))) == 1 + 4 * 2
    out = tmp_path / "out.csv"
    for position in range(len(HEADER), len(whole.encode()), 7):
        out.write_bytes(whole.encode()[:position])
        predict([str(folder)], checkpoint=digits["run"], output=out, resume=True, topk=2, batch_size=1, workers=0)
        assert out.read_text() == whole, position
