"""``--data labels.csv``: CSV label files in the Kaggle layout, through the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.usefixtures("isolated")


def _image(path: Path, label: int, seed: int) -> None:
    """Brightness tells the class, so one epoch of an MLP learns something."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).normal(60 + 120 * label, 20, (12, 12, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)


def _kaggle(root: Path, *, count: int = 40, missing: str | None = "9999") -> Path:
    """train.csv with ids without extension, labels as names and a split column; the images in
    train_images/ (some .png, some .jpg); one row names an image that is not there."""
    lines = ["id,label,split"]
    for i in range(count):
        _image(root / "train_images" / f"{i:04d}.{'png' if i % 3 else 'jpg'}", i % 2, i)
        lines.append(f"{i:04d},{['cat', 'dog'][i % 2]},{'test' if i >= count - 10 else 'train'}")
    if missing:
        lines.append(f"{missing},cat,train")
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    return root / "train.csv"


def test_a_kaggle_label_file_checks_trains_and_evaluates_without_flags(run_cli, tmp_path):
    labels = _kaggle(tmp_path / "comp")
    checked = run_cli("data", "check", str(labels), "--image-dir", str(tmp_path / "comp" / "train_images"), "--json")
    assert checked.code == 0, checked.stderr
    report = checked.json()
    assert report["kind"] == "csv" and report["classes"] == ["cat", "dog"]
    # the split column's test rows as given; val carved out of its train rows (20 % of 15 per class)
    assert report["counts"]["test"] == {"cat": 5, "dog": 5} and report["counts"]["val"] == {"cat": 3, "dog": 3}
    assert report["counts"]["train"] == {"cat": 12, "dog": 12}
    [missing] = report["bad_files"]
    assert Path(missing["path"]).name == "9999" and "no such file" in missing["reason"] and "line 42" in missing["reason"]

    trained = run_cli("train", "--data", str(labels), "--image-dir", str(tmp_path / "comp" / "train_images"),
                      "--arch", "mlp", "--epochs", "1", "--batch-size", "8", "--out", "run", "--json")
    assert trained.code == 0, trained.stderr
    assert "9999" in trained.stderr  # the missing image is reported as training starts
    evaluated = run_cli("evaluate", "run", "--json")  # the checkpoint holds the CSV, its columns and --image-dir
    assert evaluated.code == 0, evaluated.stderr
    assert evaluated.json()["images"] == 10 and "differ" not in evaluated.stderr

    exported = run_cli("data", "export", str(labels), "out", "--image-dir", str(tmp_path / "comp" / "train_images"), "--json")
    assert exported.code == 0 and exported.json()["images"] == {"train": 24, "val": 6, "test": 10}


def test_paths_relative_to_the_csv_and_missing_images_count_against_max_bad(run_cli, tmp_path):
    lines = ["filename,class"]  # no split column: split like a folder
    for i in range(30):
        _image(tmp_path / "d" / "images" / f"{i}.png", i % 2, i)
        lines.append(f"images/{i}.png,{i % 2}")
    lines += ["images/gone.png,0", "images/also-gone,1"]
    (tmp_path / "d" / "labels.csv").write_text("\n".join(lines) + "\n")
    checked = run_cli("data", "check", str(tmp_path / "d" / "labels.csv"), "--max-bad", "2", "--json")
    assert checked.code == 0, checked.stderr
    report = checked.json()
    assert report["split"]["method"] == "given (train); val and test carved from train, stratified"
    assert sum(sum(c.values()) for c in report["counts"].values()) == 30 and len(report["bad_files"]) == 2
    refused = run_cli("train", "--data", str(tmp_path / "d" / "labels.csv"), "--arch", "mlp", "--epochs", "1", "--max-bad", "1")
    assert refused.code == 1 and "2 of 32 images cannot be read, more than --max-bad 1" in refused.stderr


def test_columns_found_by_name_or_an_error_listing_them(run_cli, tmp_path):
    _kaggle(tmp_path, count=12, missing=None)
    (tmp_path / "odd.csv").write_text("picture,breed\n" + "".join(f"train_images/{i:04d},{i % 2}\n" for i in range(12)))
    unknown = run_cli("data", "check", "odd.csv", "--image-column", "photo")
    assert unknown.code == 1 and "no column 'photo' (--image-column)" in unknown.stderr and "picture, breed" in unknown.stderr
    unnamed = run_cli("data", "check", "odd.csv")
    assert unnamed.code == 1 and "no image column" in unnamed.stderr and "--image-column" in unnamed.stderr
    named = run_cli("data", "check", "odd.csv", "--image-column", "picture", "--label-column", "breed", "--json")
    assert named.code == 0, named.stderr
    assert named.json()["classes"] == ["0", "1"] and not named.json()["bad_files"]


def test_empty_and_header_only_files_are_clear_errors(run_cli, tmp_path):
    (tmp_path / "empty.csv").write_text("")
    empty = run_cli("train", "--data", "empty.csv", "--arch", "mlp", "--epochs", "1")
    assert empty.code == 1 and "empty.csv is empty" in empty.stderr and "Traceback" not in empty.stderr
    (tmp_path / "header.csv").write_text("image,label\n")
    header = run_cli("data", "check", "header.csv")
    assert header.code == 1 and "header.csv has a header (image,label) but no rows" in header.stderr
    nothing = run_cli("data", "check", "absent.csv")
    assert nothing.code == 1 and "no CSV label file 'absent.csv'" in nothing.stderr
