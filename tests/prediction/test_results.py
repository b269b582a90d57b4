"""``tlcli.prediction.results``: a prediction's fields, the top classes of a batch of
probabilities, and the text of a batch in CSV, JSON lines and a JSON array (with its header and
footer), including paths that CSV must quote and file names that are not UTF-8."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch

from tlcli.prediction.results import (
    CSV_HEADER, Prediction, batch_text, csv_rows, csv_text, footer, header, json_line, top_classes,
)

CLASSES = ["cat", "dog", "fox"]


def _batch() -> list[Prediction]:
    return [
        Prediction("a.png", [("dog", 0.7), ("cat", 0.2)]),
        Prediction("broken.png", [], "not an image PIL can read"),
        Prediction('odd, "quoted"\nname.png', [("fox", 0.5), ("dog", 0.25)]),
    ]


def _document(format: str, batches: list[list[Prediction]]) -> str:
    """A whole output as predict streams it: the header, each batch's text, the footer."""
    return header(format) + "".join(batch_text(format, batch, first=i == 0) for i, batch in enumerate(batches)) + footer(format)


def test_a_prediction_reports_its_most_likely_class_or_none_on_error():
    good, bad = Prediction("a.png", [("dog", 0.7), ("cat", 0.2)]), Prediction("b.png", [], "unreadable")

    assert (good.label, good.probability) == ("dog", 0.7)
    assert (bad.label, bad.probability) == (None, None)
    assert bad.to_dict() == {"path": "b.png", "predictions": [], "error": "unreadable"}
    assert good.to_dict()["predictions"] == [{"label": "dog", "probability": 0.7}, {"label": "cat", "probability": 0.2}]


def test_top_classes_lists_each_rows_k_best_most_likely_first():
    probabilities = torch.tensor([[0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])

    top = top_classes(probabilities, CLASSES, 2)

    assert [[label for label, _ in row] for row in top] == [["fox", "dog"], ["cat", "dog"]]
    assert [p for row in top for _, p in row] == pytest.approx([0.6, 0.3, 0.5, 0.4])
    assert all(isinstance(p, float) for row in top for _, p in row)  # plain floats, for csv and json


def test_top_classes_clamps_k_to_the_number_of_classes():
    top = top_classes(torch.tensor([[0.2, 0.5, 0.3]]), CLASSES, 10)

    assert [label for label, _ in top[0]] == ["dog", "fox", "cat"]


def test_csv_has_one_row_per_rank_or_one_error_row_per_image():
    rows = csv_rows(_batch())

    assert rows == [
        ["a.png", "1", "dog", "0.700000", ""],
        ["a.png", "2", "cat", "0.200000", ""],
        ["broken.png", "", "", "", "not an image PIL can read"],
        ['odd, "quoted"\nname.png', "1", "fox", "0.500000", ""],
        ['odd, "quoted"\nname.png', "2", "dog", "0.250000", ""],
    ]


def test_csv_text_quotes_what_needs_it_and_reads_back_as_the_same_rows():
    document = _document("csv", [_batch()[:1], _batch()[1:]])

    assert document.startswith("path,rank,label,probability,error\n")
    assert list(csv.reader(io.StringIO(document))) == [CSV_HEADER, *csv_rows(_batch())]
    assert csv_text([["a,b", "1"]]) == '"a,b",1\n'  # Unix newlines, whatever the platform


def test_json_lines_is_one_object_per_image_in_order():
    text = batch_text("jsonl", _batch(), first=True)

    assert header("jsonl") == footer("jsonl") == ""
    assert text.endswith("\n") and len(text.splitlines()) == len(_batch())  # the newline inside a name is escaped
    assert [json.loads(line) for line in text.splitlines()] == [p.to_dict() for p in _batch()]


@pytest.mark.parametrize("sizes", [[3], [1, 2], [1, 1, 1]])
def test_the_json_array_is_valid_json_however_the_images_are_batched(sizes):
    predictions, batches, start = _batch(), [], 0
    for size in sizes:
        batches.append(predictions[start:start + size])
        start += size

    assert json.loads(_document("json", batches)) == [p.to_dict() for p in predictions]


def test_an_empty_json_array_is_still_valid_json():
    assert json.loads(_document("json", [])) == []


def test_a_file_name_that_is_not_utf8_stays_valid_utf8_json_and_reads_back_the_same():
    name = b"caf\xe9.png".decode("utf-8", "surrogateescape")  # as os.listdir gives it
    line = json_line(Prediction(name, [("cat", 1.0)]).to_dict())

    assert "\\udce9" in line and "\udce9" not in line
    line.encode("utf-8")  # strict: would raise on a lone surrogate
    assert json.loads(line)["path"] == name
    assert batch_text("jsonl", [Prediction(name, [("cat", 1.0)])], first=True) == line


def test_unicode_names_are_written_as_themselves_not_escaped():
    assert '"photo-été.png"' in json_line(Prediction("photo-été.png", []).to_dict())
