"""``tlcli.data.check.check_data``: every image decoded, sizes and modes summed up, what is odd
but usable listed as suspicious, what cannot be decoded moved to the bad files, and the same
rules as training (``dataset.problems``) deciding whether the data is trainable."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import make_class_folder, write_image
from tlcli.core.config import DataConfig
from tlcli.core.errors import DataError
from tlcli.data.check import TINY_SIDE, check_data
from tlcli.data.sources import load_data

pytestmark = pytest.mark.usefixtures("isolated")


def _suspicious(report) -> dict[str, str]:
    return {Path(entry.path).name: entry.reason for entry in report.suspicious}


def _truncate(path: Path) -> Path:
    """The header still reads, so loading keeps it; only a full decode finds it broken."""
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    return path


def test_a_clean_folder_is_trainable_with_its_sizes_and_modes(tiny):
    write_image(tiny / "b" / "wide.png", size=(20, 10), seed=50)
    write_image(tiny / "b" / "grey.png", size=(8, 8), mode="L", seed=51)
    report = check_data(DataConfig(source=str(tiny)))
    assert report.trainable and report.problems == [] and report.suspicious == []
    assert report.sizes == {"width": {"min": 8, "median": 8, "max": 20}, "height": {"min": 8, "median": 8, "max": 10}}
    assert report.modes == {"RGB": 13, "L": 1}
    assert report.imbalance_ratio == 8 / 6


def test_to_dict_is_plain_json_with_the_report_and_the_data_summary(tiny):
    report = check_data(DataConfig(source=str(tiny)))
    as_json = json.loads(json.dumps(report.to_dict()))
    assert as_json["trainable"] is True and as_json["imbalance_ratio"] == 1.0
    assert as_json["classes"] == ["a", "b"] and as_json["kind"] == "folder"
    assert sum(sum(per_class.values()) for per_class in as_json["counts"].values()) == 12
    assert as_json["image_modes"] == {"RGB": 12} and as_json["bad_files"] == [] and as_json["suspicious_files"] == []


def test_odd_but_usable_images_are_listed_as_suspicious_and_kept(tiny):
    write_image(tiny / "a" / "png-named.jpg", size=(8, 8), fmt="PNG", seed=60)
    write_image(tiny / "a" / "small.png", size=(TINY_SIDE - 1, 12), seed=61)
    write_image(tiny / "b" / "alpha.png", size=(8, 8), mode="RGBA", seed=62)
    frames = [Image.new("RGB", (8, 8), color) for color in ("red", "blue")]
    frames[0].save(tiny / "b" / "moving.gif", save_all=True, append_images=frames[1:])
    report = check_data(DataConfig(source=str(tiny)))
    reasons = _suspicious(report)
    assert reasons["png-named.jpg"] == "PNG content with a .jpg extension"
    assert reasons["small.png"] == f"tiny image ({TINY_SIDE - 1}x12)"
    assert reasons["alpha.png"] == "RGBA image, converted to RGB"
    assert "animated (2 frames): the first frame is used" in [e.reason for e in report.suspicious if e.path.endswith("moving.gif")]
    assert report.trainable and sum(report.modes.values()) == 16  # suspicious, not refused


def test_an_image_that_cannot_be_decoded_moves_to_the_bad_files(tiny):
    broken = _truncate(write_image(tiny / "a" / "broken.png", size=(64, 64), seed=70))
    report = check_data(DataConfig(source=str(tiny), max_bad=5))
    assert [Path(entry.path) for entry in report.data.bad_files] == [broken]
    assert all(broken not in images.paths for images in report.data.splits.values())
    assert sum(report.modes.values()) == 12 and report.trainable


def test_too_many_bad_images_make_a_problem_not_an_exception(tiny):
    _truncate(write_image(tiny / "a" / "broken.png", size=(64, 64), seed=70))
    report = check_data(DataConfig(source=str(tiny), max_bad=0.0))
    assert not report.trainable
    assert len(report.problems) == 1 and report.problems[0].startswith("1 of 13 images cannot be read, more than --max-bad 0 allows")
    assert report.to_dict()["trainable"] is False


def test_a_class_left_without_training_images_is_a_problem_and_its_imbalance_is_none(tmp_path):
    root = make_class_folder(tmp_path / "split" / "train", {"a": 3}, size=(8, 8))
    _truncate(write_image(root / "b" / "only.png", size=(64, 64), seed=80))
    make_class_folder(tmp_path / "split" / "val", {"a": 1}, size=(8, 8), seed=10_000)
    report = check_data(DataConfig(source=str(tmp_path / "split"), max_bad=5))
    assert report.problems == ["class 'b' has no readable training images"]
    assert report.imbalance_ratio == float("inf")
    assert report.to_dict()["imbalance_ratio"] is None  # JSON has no infinity


def test_structural_problems_raise_as_they_do_in_training(tmp_path):
    make_class_folder(tmp_path / "one", {"only": 2}, size=(8, 8))
    with pytest.raises(DataError, match="single class"):
        check_data(DataConfig(source=str(tmp_path / "one")))


def _png(seed: int, size=(10, 6)) -> bytes:
    """Encoded grey PNG bytes, to store inside a record."""
    buffer = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8), "L").save(buffer, format="PNG")
    return buffer.getvalue()


def test_images_inside_records_are_decoded_for_their_size_and_mode(tmp_path):
    tfrecord = pytest.importorskip("tfrecord")
    broken = _png(99, size=(64, 64))
    writer = tfrecord.TFRecordWriter(str(tmp_path / "set.tfrec"))
    for i in range(8):
        writer.write({"image": (_png(i), "byte"), "class": (i % 2, "int"), "id": (f"r{i}".encode(), "byte")})
    writer.write({"image": (broken[: len(broken) // 2], "byte"), "class": (0, "int"), "id": (b"broken", "byte")})
    writer.close()
    config = DataConfig(source=str(tmp_path / "set.tfrec"), max_bad=5)
    # Its header reads, so loading keeps it: only the check's full decode finds it broken.
    assert sum(len(images) for images in load_data(config, judged=False).splits.values()) == 9
    report = check_data(config)
    assert report.modes == {"L": 8} and report.sizes["width"] == {"min": 10, "median": 10, "max": 10}
    assert [entry.path.rsplit("#", 1)[1] for entry in report.data.bad_files] == ["broken"]
    assert sum(len(images) for images in report.data.splits.values()) == 8 and report.trainable
