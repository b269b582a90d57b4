"""One image, one place: every source is de-duplicated by resolved path and by the bytes of its
images before splitting, and ``train`` and ``data check`` apply the same rules (``--max-bad``, a
class without training images) to every source. Label files are read within bounds."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import make_class_folder

pytestmark = pytest.mark.usefixtures("isolated")

TINY_TRAIN = ("--arch", "mlp", "--epochs", "1", "--batch-size", "8", "--workers", "0")


def _image(path: Path, label: int, seed: int) -> Path:
    """Brightness tells the class; the seed makes each image its own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).normal(60 + 120 * label, 20, (12, 12, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return path


def _labels_csv(root: Path, rows: list[str], *, count: int = 20, header: str = "image,label") -> Path:
    for i in range(count):
        _image(root / "img" / f"{i}.png", i % 2, i)
    lines = [header, *(f"img/{i}.png,{'cat' if i % 2 == 0 else 'dog'}" for i in range(count)), *rows]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root / "labels.csv"


def _every_key(report: dict) -> int:
    return sum(sum(per_class.values()) for per_class in report["counts"].values())


def _error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


# --- CSV label files: one row per file -------------------------------------------------------


def test_a_file_listed_twice_or_as_dot_slash_is_one_image_with_a_note(run_cli, tmp_path):
    labels = _labels_csv(tmp_path / "d", ["img/3.png,dog", "./img/3.png,dog", "img/./4.png,cat"])
    checked = run_cli("data", "check", str(labels), "--json")
    assert checked.code == 0, checked.stderr
    report = checked.json()
    assert _every_key(report) == 20  # not 23: each file once, so it cannot be in two splits
    assert len(report["duplicates"]) == 3 and any("dropped 3 rows naming an image file an earlier row names" in n for n in report["notes"])
    trained = run_cli("train", "--data", str(labels), *TINY_TRAIN, "--out", "run")
    assert trained.code == 0, trained.stderr
    assert "dropped 3 rows" in trained.stderr


def test_one_file_under_two_labels_is_an_error_listing_it(run_cli, tmp_path):
    labels = _labels_csv(tmp_path / "d", ["img/3.png,cat", "./img/5.png,cat", "img/3.png,cat"])  # 3.png: one file
    for command in (("data", "check", str(labels)), ("train", "--data", str(labels), *TINY_TRAIN)):
        result = run_cli(*command)
        assert result.code == 1
        line = _error_line(result)
        assert "lists 2 image files under two labels" in line and "img/3.png (line 5: dog, line 22: cat)" in line


def _split_rows(root: Path, count: int, split_of) -> list[str]:
    """A CSV with a split column: ``count`` images of labels 0 and 1, image i in ``split_of(i)``."""
    lines = ["image,label,split"]
    for i in range(count):
        _image(root / f"{i}.png", i % 2, i)
        lines.append(f"{i}.png,{i % 2},{split_of(i)}")
    return lines


def test_a_split_column_that_puts_one_file_in_two_splits_is_an_error(run_cli, tmp_path):
    root = tmp_path / "d"
    lines = _split_rows(root, 12, lambda i: "test" if i >= 8 else "train")
    lines.append("9.png,1,train")  # a test image given to train as well
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    result = run_cli("train", "--data", str(root / "labels.csv"), *TINY_TRAIN)
    assert result.code == 1
    line = _error_line(result)
    assert "lists 1 image file in two splits: 9.png (line 11: test, line 14: train)" in line


def test_a_csv_class_only_in_the_test_split_is_refused_by_train_as_by_data_check(run_cli, tmp_path):
    root = tmp_path / "d"
    lines = _split_rows(root, 14, lambda i: "train")
    _image(root / "odd.png", 1, 99)
    lines.append("odd.png,2,test")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    checked = run_cli("data", "check", str(root / "labels.csv"))
    trained = run_cli("train", "--data", str(root / "labels.csv"), *TINY_TRAIN)
    assert checked.code == 1 and "class '2' has no readable training images" in checked.stderr
    assert trained.code == 1 and "class '2' has no readable training images" in _error_line(trained)


# --- the same bytes under two names ----------------------------------------------------------


def test_byte_identical_images_in_a_folder_are_kept_once_and_a_label_clash_is_an_error(run_cli, tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 10, "b": 10})
    shutil.copy(root / "a" / "3.png", root / "a" / "copy-of-3.png")
    checked = run_cli("data", "check", str(root), "--json")
    assert checked.code == 0, checked.stderr
    report = checked.json()
    assert _every_key(report) == 20 and [Path(d["path"]).name for d in report["duplicates"]] == ["copy-of-3.png"]
    assert any("dropped 1 duplicate image" in note for note in report["notes"])

    shutil.copy(root / "a" / "5.png", root / "b" / "also-5.png")
    clash = run_cli("train", "--data", str(root), *TINY_TRAIN)
    assert clash.code == 1
    line = _error_line(clash)
    assert "1 image is byte-identical to an image of another class" in line
    assert "a/5.png (a)" in line and "b/also-5.png (b)" in line


def test_a_test_image_copied_into_train_is_never_trained_on(run_cli, tmp_path):
    root = tmp_path / "d"
    make_class_folder(root / "train", {"a": 6, "b": 6})
    make_class_folder(root / "test", {"a": 2, "b": 2}, seed=10000)
    shutil.copy(root / "test" / "b" / "1.png", root / "train" / "b" / "from-test.png")
    checked = run_cli("data", "check", str(root), "--json")
    assert checked.code == 0, checked.stderr  # trainable: the copy is dropped from train, and said so
    report = checked.json()
    assert report["counts"]["train"] == {"a": 6, "b": 6} and report["counts"]["test"] == {"a": 2, "b": 2}
    [duplicate] = report["duplicates"]
    assert duplicate["path"].endswith("train/b/from-test.png") and "(in test)" in duplicate["reason"]
    assert any("dropped from train or val so no test or val image is trained on" in note for note in report["notes"])
    trained = run_cli("train", "--data", str(root), *TINY_TRAIN, "--out", "run")
    assert trained.code == 0 and "dropped 1 duplicate image" in trained.stderr


def test_a_second_load_reads_digests_from_the_cache(tmp_path):
    """The digest store is keyed by path, size and mtime: what it holds is believed."""
    from tlcli.core.cache import default_cache_dir
    from tlcli.core.config import DataConfig
    from tlcli.data.sources import load_data

    root = make_class_folder(tmp_path / "d", {"a": 6, "b": 6})
    assert sum(len(s) for s in load_data(DataConfig(str(root))).splits.values()) == 12
    [store] = (default_cache_dir() / "digests").glob("*.json")
    digests = json.loads(store.read_text())
    assert len(digests) == 12
    same = next(value for key, value in digests.items() if key.split("\t")[0].endswith("a/0.png"))
    store.write_text(json.dumps({key: same if key.split("\t")[0].endswith("a/1.png") else value for key, value in digests.items()}))
    again = load_data(DataConfig(str(root)))
    assert [Path(d.path).name for d in again.duplicates] == ["1.png"]  # unchanged files are not hashed again


def test_the_digest_store_keeps_every_split_of_a_pre_split_folder(tmp_path):
    """Each split's digests are asked for in turn: the store keeps them all, so none is hashed again."""
    from tlcli.core.cache import default_cache_dir
    from tlcli.core.config import DataConfig
    from tlcli.data.sources import load_data

    root = tmp_path / "d"
    make_class_folder(root / "train", {"a": 4, "b": 4})
    make_class_folder(root / "test", {"a": 2, "b": 2}, seed=100)
    load_data(DataConfig(str(root)))
    [store] = (default_cache_dir() / "digests").glob("*.json")
    folders = {Path(key.split("\t")[0]).parent.parent.name for key in json.loads(store.read_text())}
    assert len(json.loads(store.read_text())) == 12 and folders == {"train", "test"}


# --- Hugging Face data: the same rules as a folder -------------------------------------------


def _hf(root: Path, splits: dict[str, list], names=("a", "b")) -> Path:
    """A dataset repository's parquet layout; each split a list of (image or cell, label)."""
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(names))})
    (root / "data").mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        table = datasets.Dataset.from_dict({"image": [r[0] for r in rows], "label": [r[1] for r in rows]}, features=features)
        table.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return root


def _pictures(count: int, seed: int, label_of=lambda i: i % 2) -> list:
    rng = np.random.default_rng(seed)
    return [(Image.fromarray(np.clip(rng.normal(40 + 120 * label_of(i), 20, (12, 12, 3)), 0, 255).astype(np.uint8)), label_of(i))
            for i in range(count)]


def test_hf_rows_identical_to_test_rows_are_dropped_from_train_and_reported(run_cli, tmp_path):
    train, test = _pictures(30, 0), _pictures(6, 1)
    repo = _hf(tmp_path / "hf", {"train": train + test[:2], "test": test})
    checked = run_cli("data", "check", f"hf:{repo}", "--json")
    assert checked.code == 0, checked.stderr
    report = checked.json()
    assert sorted(d["path"] for d in report["duplicates"]) == [f"hf:{repo}/train/30", f"hf:{repo}/train/31"]
    assert all("(in test)" in d["reason"] for d in report["duplicates"])
    assert sum(report["counts"]["train"].values()) + sum(report["counts"]["val"].values()) == 30


def test_hf_data_honours_max_bad_in_train_as_data_check_does(run_cli, tmp_path):
    rows = _pictures(40, 0)
    rows[:5] = [({"bytes": b"not an image", "path": None}, label) for _, label in rows[:5]]
    repo = _hf(tmp_path / "hf", {"train": rows})
    checked = run_cli("data", "check", f"hf:{repo}", "--max-bad", "0")
    trained = run_cli("train", "--data", f"hf:{repo}", "--max-bad", "0", *TINY_TRAIN)
    assert checked.code == 1 and trained.code == 1
    assert "5 of 40 images cannot be read, more than --max-bad 0" in checked.stderr
    assert "5 of 40 images cannot be read, more than --max-bad 0" in _error_line(trained)
    assert run_cli("train", "--data", f"hf:{repo}", "--max-bad", "5", *TINY_TRAIN, "--out", "run").code == 0


def test_a_hf_class_only_in_test_is_refused_by_train_as_by_data_check(run_cli, tmp_path):
    repo = _hf(tmp_path / "hf", {"train": _pictures(20, 0), "test": [*_pictures(4, 1), *_pictures(2, 2, lambda i: 2)]},
               names=("a", "b", "c"))
    checked = run_cli("data", "check", f"hf:{repo}")
    trained = run_cli("train", "--data", f"hf:{repo}", *TINY_TRAIN)
    assert checked.code == 1 and "class 'c' has no readable training images" in checked.stderr
    assert trained.code == 1 and "class 'c' has no readable training images" in _error_line(trained)


def test_a_hf_label_beyond_the_class_names_and_an_empty_split_are_one_line_errors(run_cli, tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    table = datasets.Dataset.from_dict({"image": [p for p, _ in _pictures(8, 0)], "label": [i % 2 for i in range(8)]}, features=features)
    # A label column of integers declared a ClassLabel of two names, as a hand-edited
    # dataset_info.json does: nothing checks the range, so label 5 stays 5.
    plain = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    datasets.Dataset.from_dict({"image": [p for p, _ in _pictures(8, 0)], "label": [0, 1, 0, 5, 0, 1, 0, 1]},
                               features=plain).save_to_disk(str(tmp_path / "beyond"))
    info_file = tmp_path / "beyond" / "dataset_info.json"
    info = json.loads(info_file.read_text())
    info["features"]["label"] = {"names": ["a", "b"], "_type": "ClassLabel"}
    info_file.write_text(json.dumps(info))
    result = run_cli("data", "check", f"hf:{tmp_path / 'beyond'}")
    assert result.code == 1
    assert "1 row of the train split has a 'label' beyond the ClassLabel's 2 names (first: row 3, label 5)" in _error_line(result)

    datasets.DatasetDict({"train": table, "test": table.select([])}).save_to_disk(str(tmp_path / "empty"))
    empty = run_cli("train", "--data", f"hf:{tmp_path / 'empty'}", *TINY_TRAIN)
    assert empty.code == 1 and "split 'test' has no rows" in _error_line(empty)


# --- label files read within bounds ----------------------------------------------------------


def test_a_fifo_as_label_file_is_refused_at_once(run_cli, tmp_path):
    os.mkfifo(tmp_path / "labels.csv")
    result = run_cli("data", "check", str(tmp_path / "labels.csv"))
    assert result.code == 1 and "is not a regular file" in _error_line(result)


def test_a_huge_or_hostile_header_fails_fast_with_a_clear_error(run_cli, tmp_path):
    _labels_csv(tmp_path, [], count=4)
    (tmp_path / "long.csv").write_text("a" * 2_000_000 + "\nimg/0.png,cat\n")
    started = time.monotonic()
    long = run_cli("data", "check", str(tmp_path / "long.csv"))
    assert long.code == 1 and "the header line is 2,000,000 characters long" in _error_line(long)
    # csv.Sniffer is quadratic in a header like this one: 40 s for it on the whole line.
    (tmp_path / "quotes.csv").write_text(',"' * 30_000 + "\nimg/0.png,cat\n")
    quotes = run_cli("data", "check", str(tmp_path / "quotes.csv"))
    assert quotes.code == 1 and "no image column" in _error_line(quotes) and "more; name it with --image-column" in _error_line(quotes)
    assert time.monotonic() - started < 5


def test_a_label_file_over_the_size_limit_is_refused_unread(run_cli, tmp_path):
    huge = tmp_path / "huge.csv"
    huge.write_text("image,label\nx.png,cat\n")
    os.truncate(huge, 300 << 20)  # sparse: no disk used, nothing to read but zeros
    started = time.monotonic()
    result = run_cli("data", "check", str(huge))
    assert result.code == 1 and "is larger than 268,435,456 bytes" in _error_line(result)
    assert time.monotonic() - started < 1


def test_a_field_beyond_the_limit_names_its_line(run_cli, tmp_path):
    labels = _labels_csv(tmp_path, [f"img/1.png,{'x' * 100_000}"], count=4)
    result = run_cli("data", "check", str(labels))
    assert result.code == 1 and "labels.csv, line" in _error_line(result) and "field larger than field limit" in _error_line(result)
