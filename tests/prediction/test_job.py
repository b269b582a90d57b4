"""``tlcli.prediction.job``: ``predict`` streaming each batch's predictions (to a stream, a file
and ``on_batch``) in input order with error rows in place, its summary, what it refuses before
loading a model, ``--resume`` giving the file an uninterrupted run writes, stopping between
batches on SIGUSR1 or a closed reader; and ``predict_images`` on images already in memory."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
from pathlib import Path

import pytest
import torch
from PIL import Image

from tlcli.core.errors import ConfigError, Interrupted, TlcliError
from tlcli.core.stopping import handling_signals
from tlcli.data.images import load_image
from tlcli.prediction.classifiers import load_classifier
from tlcli.prediction.job import PredictSummary, predict, predict_images
from tlcli.prediction.results import header, top_classes

pytestmark = pytest.mark.usefixtures("isolated")


@pytest.fixture(scope="module")
def trained(tiny_run) -> dict:
    return {"run": str(tiny_run.run_dir), "checkpoint": tiny_run.run_dir / "best.pt", "folder": tiny_run.folder, "images": tiny_run.images}

def _predict(trained, inputs, **options) -> tuple[str, PredictSummary]:
    stream = io.StringIO()
    options = {"batch_size": 4, "workers": 0, "device": "cpu", **options}
    summary = predict([str(i) for i in inputs], checkpoint=trained["run"], stream=stream, **options)
    return stream.getvalue(), summary


def test_predictions_come_in_input_order_with_error_rows_in_place(trained, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    inputs = [trained["images"][3], broken, trained["folder"] / "b", tmp_path / "gone.png"]

    text, summary = _predict(trained, inputs, format="jsonl")

    entries = [json.loads(line) for line in text.splitlines()]
    folder_b = [str(p) for p in sorted((trained["folder"] / "b").glob("*.png"))]
    assert [e["path"] for e in entries] == [str(inputs[0]), str(broken), *folder_b, str(inputs[3])]
    assert [e["error"] for e in entries if e["error"]] == ["not an image PIL can read", "no such file or folder"]
    assert (summary.images, summary.failed, summary.skipped, summary.source) == (9, 2, 0, trained["checkpoint"])
    # Each row is the model's answer for that very image: the batching and the error rows shift nothing.
    classifier = load_classifier(trained["run"], device="cpu")
    readable = [e for e in entries if not e["error"]]
    probabilities = classifier(torch.stack([classifier.transform(load_image(Path(e["path"]))) for e in readable]))
    for entry, top in zip(readable, top_classes(probabilities, classifier.classes, 2)):
        assert [p["label"] for p in entry["predictions"]] == [label for label, _ in top]
        assert [p["probability"] for p in entry["predictions"]] == pytest.approx([p for _, p in top], abs=1e-6)


def test_each_batch_reaches_on_batch_once_written(trained):
    seen = []
    text, _ = _predict(trained, [trained["folder"]], batch_size=5, topk=1, on_batch=lambda batch: seen.append(len(batch)))

    assert seen == [5, 5, 2]
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == header("csv").strip().split(",") and len(rows) == 1 + 12  # topk 1: one row an image


def test_topk_is_clamped_to_the_classes_and_json_is_one_valid_array(trained):
    text, _ = _predict(trained, trained["images"][:5], format="json", topk=5, batch_size=2)

    document = json.loads(text)
    assert [entry["path"] for entry in document] == [str(p) for p in trained["images"][:5]]
    assert all(len(entry["predictions"]) == 2 for entry in document)


def test_the_table_format_writes_nothing_to_the_stream_but_calls_on_batch(trained):
    seen = []
    text, summary = _predict(trained, trained["images"][:3], format="table", on_batch=seen.extend)

    assert text == "" and [p.path for p in seen] == [str(p) for p in trained["images"][:3]] and summary.images == 3


def test_an_image_on_stdin_is_predicted_as_dash(trained):
    stdin = io.BytesIO(trained["images"][0].read_bytes())

    text, summary = _predict(trained, ["-"], format="jsonl", stdin=stdin)

    assert json.loads(text)["path"] == "-" and summary.images == 1 and summary.failed == 0


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"format": "xml"}, TlcliError, "unknown format 'xml'"),
    ({"topk": 0}, ConfigError, "top-k and the batch size must be at least 1, got 0 and 4"),
    ({"batch_size": 0}, ConfigError, "got 5 and 0"),
])
def test_bad_options_are_refused(trained, options, error, message):
    with pytest.raises(error, match=message):
        _predict(trained, trained["images"][:1], **options)


def test_nothing_to_classify_is_refused_before_any_model_loads(tmp_path):
    # A checkpoint that does not exist would be a CheckpointError if the model were loaded first.
    with pytest.raises(TlcliError, match=r"no images to predict: .*gone.png: no such file or folder"):
        predict([str(tmp_path / "gone.png")], checkpoint=str(tmp_path / "nowhere"), stream=io.StringIO())
    with pytest.raises(TlcliError, match="no images to predict: none given"):
        predict([], checkpoint=str(tmp_path / "nowhere"), stream=io.StringIO())


def test_an_existing_output_is_refused_before_any_model_loads(tmp_path, trained):
    output = tmp_path / "out.csv"
    output.write_text("the user's file\n")

    with pytest.raises(TlcliError, match="already exists: add --resume"):
        predict([str(trained["images"][0])], checkpoint=str(tmp_path / "nowhere"), output=output)


def test_resume_after_a_cut_gives_the_file_an_uninterrupted_run_writes(trained, tmp_path):
    inputs, complete = [trained["folder"]], tmp_path / "complete.csv"
    _predict(trained, inputs, output=complete, batch_size=3)
    resumed = tmp_path / "resumed.csv"
    resumed.write_bytes(complete.read_bytes()[:-40])  # a kill inside the last batch's write

    _, summary = _predict(trained, inputs, output=resumed, resume=True, batch_size=3)

    assert resumed.read_bytes() == complete.read_bytes()
    assert (summary.skipped, summary.images, summary.cut > 0) == (9, 3, True)


def test_resume_of_a_finished_file_predicts_nothing_more(trained, tmp_path):
    output = tmp_path / "out.jsonl"
    _predict(trained, trained["images"][:4], output=output, format="jsonl", batch_size=2)
    before = output.read_bytes()

    _, summary = _predict(trained, trained["images"][:4], output=output, format="jsonl", batch_size=2, resume=True)

    assert (summary.skipped, summary.images, summary.cut) == (4, 0, 0) and output.read_bytes() == before


def test_sigusr1_stops_between_batches_leaving_whole_rows(trained, tmp_path):
    output = tmp_path / "out.csv"

    def ask_to_stop(batch):
        os.kill(os.getpid(), signal.SIGUSR1)  # as SLURM's --signal=USR1 would, while the job runs

    with handling_signals(), pytest.raises(Interrupted) as stopped:
        _predict(trained, [trained["folder"]], output=output, topk=1, batch_size=4, on_batch=ask_to_stop)

    assert stopped.value.signum == signal.SIGUSR1
    assert "after 4 images predicted" in str(stopped.value) and "--resume" in str(stopped.value)
    assert len(output.read_text().splitlines()) == 1 + 4  # the header and the first batch, whole


def test_a_reader_that_closes_the_stream_stops_the_job_quietly(trained):
    class ClosedAfterHeader(io.StringIO):
        def write(self, text):
            if self.getvalue():
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

    with pytest.raises(Interrupted) as stopped:
        predict([str(trained["folder"])], checkpoint=trained["run"], stream=ClosedAfterHeader(), workers=0, device="cpu")

    assert stopped.value.signum == signal.SIGPIPE and "stopped by SIGPIPE after 0 images" in str(stopped.value)


def test_images_in_memory_get_the_predictions_their_files_get(trained):
    paths = trained["images"][:5]
    seen = []

    predictions, summary = predict_images([Image.open(p) for p in paths], checkpoint=trained["run"], topk=2, batch_size=2,
                                          device="cpu", on_batch=lambda batch: seen.append(len(batch)))

    text, _ = _predict(trained, paths, format="jsonl", topk=2, batch_size=2)
    from_files = [json.loads(line) for line in text.splitlines()]
    assert [p.path for p in predictions] == [f"<image {i}>" for i in range(5)]
    assert [p.top for p in predictions] == [[(q["label"], q["probability"]) for q in e["predictions"]] for e in from_files]
    assert seen == [2, 2, 1] and (summary.images, summary.source) == (5, trained["checkpoint"])


def test_images_in_memory_refuse_bad_sizes(trained):
    with pytest.raises(ConfigError):
        predict_images([], checkpoint=trained["run"], topk=0)
