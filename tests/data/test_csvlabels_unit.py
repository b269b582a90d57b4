"""``tlcli.data.csvlabels``, function by function: the bounded, delimiter-sniffing read of a label
file, the split column, finding the file a cell names (ids without extension included), one row
per image file, ``ListedImages`` keyed as the CSV names them, and ``load_csv_data`` called
directly. (tests/data/test_csvlabels.py covers the same files through the command line.)"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.helpers import write_image
from tlcli.core.config import DataConfig
from tlcli.core.errors import DataError, TlcliError
from tlcli.data import csvlabels
from tlcli.data.csvlabels import ListedImages, _Finder, _once_per_file, _read, _Row, _split_of, load_csv_data

pytestmark = pytest.mark.usefixtures("isolated")


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def _images(folder: Path, *names: str) -> list[Path]:
    return [write_image(folder / name, size=(4, 4), seed=i) for i, name in enumerate(names)]


@pytest.mark.parametrize("text", ["image,label\na.png,cat\nb.png,dog\n", "image;label\na.png;cat\nb.png;dog\n",
                                  "image\tlabel\r\na.png\tcat\r\nb.png\tdog\r\n"])
def test_read_sniffs_the_delimiter_and_numbers_the_rows_by_line(tmp_path, text):
    header, rows = _read(_write(tmp_path / "labels.csv", text))
    assert header == ["image", "label"]
    assert rows == [(2, {"image": "a.png", "label": "cat"}), (3, {"image": "b.png", "label": "dog"})]


def test_read_drops_a_byte_order_mark_and_takes_a_single_column(tmp_path):
    header, _ = _read(_write(tmp_path / "bom.csv", "\ufeffimage,label\nx,1\n".encode("utf-8")))
    assert header == ["image", "label"]  # Excel's "UTF-8 CSV" starts with one
    header, rows = _read(_write(tmp_path / "one.csv", "image\nx.png\n"))
    assert header == ["image"] and rows == [(2, {"image": "x.png"})]


def test_read_refuses_text_that_is_not_utf8(tmp_path):
    with pytest.raises(DataError, match="is not UTF-8 text; save the label file as UTF-8 CSV"):
        _read(_write(tmp_path / "latin.csv", "image,label\nx.png,caf\xe9\n".encode("latin-1")))


@pytest.mark.parametrize("text, message", [("", "is empty: a CSV label file needs a header row"), ("  \n\n", "is empty"),
                                           ("image,label\n", r"has a header \(image,label\) but no rows")])
def test_read_refuses_empty_and_header_only_files(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        _read(_write(tmp_path / "labels.csv", text))


def test_read_refuses_an_overlong_header_before_sniffing_it(tmp_path):
    header = ",".join(f"c{i}" for i in range(csvlabels.HEADER_LIMIT // 3))
    with pytest.raises(DataError, match="the header line is .* characters long, more than a label file's 65,536"):
        _read(_write(tmp_path / "wide.csv", header + "\nx\n"))


def _overlong_field_on_line_3(tmp_path: Path) -> Path:
    return _write(tmp_path / "labels.csv", "image,label\na.png,cat\n" + "b.png," + "x" * (csvlabels.FIELD_LIMIT + 1) + "\n")


def test_read_refuses_an_overlong_field_and_restores_the_csv_limit(tmp_path):
    before = csv.field_size_limit()
    with pytest.raises(DataError, match=r"labels\.csv, line \d+: field larger than field limit \(65536\)"):
        _read(_overlong_field_on_line_3(tmp_path))
    assert csv.field_size_limit() == before  # a process-wide setting: others' CSV reads are not ours to limit


def test_read_names_the_line_of_the_overlong_field(tmp_path):
    with pytest.raises(DataError, match=r"labels\.csv, line 3: "):
        _read(_overlong_field_on_line_3(tmp_path))


def test_read_refuses_what_is_not_a_regular_file(tmp_path):
    with pytest.raises(TlcliError, match="is not a regular file"):
        _read(tmp_path)


@pytest.mark.parametrize("value, split", [("train", "train"), ("Validation", "val"), (" valid ", "val"), ("TEST", "test")])
def test_split_of_reads_the_usual_split_names_in_any_case(value, split):
    assert _split_of({"split": value}, "split", "x.csv, line 2") == split


def test_split_of_without_a_split_column_is_train_and_refuses_unknown_splits():
    assert _split_of({"split": "test"}, None, "x") == "train"
    with pytest.raises(DataError, match="x.csv, line 4: split 'holdout' is none of train, val, valid, validation, test"):
        _split_of({"split": "holdout"}, "split", "x.csv, line 4")


def test_finder_takes_a_path_as_written_or_an_id_with_its_one_image_file(tmp_path):
    exact, jpeg, nested = _images(tmp_path, "x.png", "id7.jpg", "sub/y.png")
    finder = _Finder(tmp_path)
    assert finder.find("x.png") == (exact, "")
    assert finder.find("id7") == (jpeg, "")
    assert finder.find("sub\\y.png") == (nested, "")  # a Windows path in a Kaggle CSV


def test_finder_says_why_a_cell_names_no_file(tmp_path):
    _images(tmp_path, "twin.png", "twin.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    finder = _Finder(tmp_path)
    assert finder.find("twin") == (None, "several files match it (twin.jpg, twin.png)")
    assert finder.find("gone.png") == (None, "no such file")
    assert finder.find("notes") == (None, "no such file, nor one of that name with an image extension")
    assert finder.find("no-folder/id")[0] is None


def test_once_per_file_drops_a_row_naming_a_file_again_by_another_spelling(tmp_path):
    [image] = _images(tmp_path, "x.png")
    rows = [_Row(2, "train", image, "x.png", "cat"), _Row(3, "train", tmp_path / "." / "x.png", "./x.png", "cat")]
    kept, repeated, notes = _once_per_file(rows, tmp_path / "labels.csv")
    assert kept == rows[:1]
    assert [(entry.path, entry.reason) for entry in repeated] == [(f"{tmp_path / 'labels.csv'}, line 3", "./x.png: the file line 2 lists")]
    assert notes == [f"dropped 1 row naming an image file an earlier row names (first: {repeated[0].path}: {repeated[0].reason})"]


@pytest.mark.parametrize("second, message", [(("train", "dog"), r"lists 1 image file under two labels: x\.png \(line 2: cat, line 3: dog\); give each image one label"),
                                             (("test", "cat"), r"lists 1 image file in two splits: x\.png \(line 2: train, line 3: test\)")])
def test_once_per_file_refuses_a_file_under_two_labels_or_in_two_splits(tmp_path, second, message):
    [image] = _images(tmp_path, "x.png")
    rows = [_Row(2, "train", image, "x.png", "cat"), _Row(3, second[0], image, "x.png", second[1])]
    with pytest.raises(DataError, match=message):
        _once_per_file(rows, tmp_path / "labels.csv")


def test_listed_images_are_keyed_as_the_csv_names_them_through_subset_and_concat(tmp_path):
    paths = _images(tmp_path / "deep" / "folder", "a.png", "b.png", "c.png")
    images = ListedImages(tmp_path, paths, [0, 1, 0], ["id-a", "id-b", "id-c"])
    assert images.key(1) == "id-b" and images.name(1) == str(paths[1])
    picked = images.subset([2, 0])
    assert [picked.key(i) for i in range(2)] == ["id-c", "id-a"] and picked.labels == [0, 0]
    joined = picked.concat(images.subset([1]))
    assert isinstance(joined, ListedImages) and joined.keys == ["id-c", "id-a", "id-b"] and joined.paths == [paths[2], paths[0], paths[1]]


def _labelled(root: Path, rows: list[str], header: str = "Filename,Category,Split") -> Path:
    return _write(root / "labels.csv", "\n".join([header, *rows]) + "\n")


def test_load_csv_data_finds_columns_splits_and_sorts_classes_naturally(tmp_path):
    _images(tmp_path / "img", *(f"{i}.png" for i in range(8)))
    rows = [f"{i},class{10 if i % 2 else 2},{'test' if i >= 6 else 'train'}" for i in range(8)]
    data = load_csv_data(_labelled(tmp_path, rows), DataConfig(source="labels.csv", image_dir=str(tmp_path / "img"), val_split=0.0))
    assert data.kind == "csv" and data.classes == ["class2", "class10"]
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 6, "val": 0, "test": 2}
    assert (data.split_info["image_column"], data.split_info["label_column"], data.split_info["split_column"]) == ("Filename", "Category", "Split")
    assert sorted(data.splits["test"].key(i) for i in range(2)) == ["6", "7"] and data.root == str(tmp_path / "img")


def test_load_csv_data_counts_missing_images_as_bad_and_rows_without_a_label_as_ignored(tmp_path):
    _images(tmp_path, *(f"{i}.png" for i in range(4)))
    rows = ["0.png,a,train", "1.png,b,train", "2.png,a,train", "3.png,b,train", "9.png,a,train", "3.png,,train"]
    data = load_csv_data(_labelled(tmp_path, rows), DataConfig(source="labels.csv", val_split=0.0, test_split=0.0))
    assert [(Path(f.path).name, f.reason) for f in data.bad_files] == [("9.png", "no such file (line 6 of labels.csv)")]
    assert [(f.path, f.reason) for f in data.ignored_files] == [(f"{tmp_path / 'labels.csv'}, line 7", "no label")]
    assert len(data.splits["train"]) == 4


@pytest.mark.parametrize("rows, message", [(["0.png,a,train", "1.png,a,train"], "has 1 class with usable images"),
                                           (["0.png,a,test", "1.png,b,val"], "no usable row has split 'train'")])
def test_load_csv_data_refuses_data_that_cannot_train_a_classifier(tmp_path, rows, message):
    _images(tmp_path, "0.png", "1.png")
    with pytest.raises(DataError, match=message):
        load_csv_data(_labelled(tmp_path, rows), DataConfig(source="labels.csv"))


def test_load_csv_data_refuses_an_image_dir_that_is_not_a_folder(tmp_path):
    path = _labelled(tmp_path, ["0.png,a,train"])
    with pytest.raises(DataError, match=r"--image-dir .*nowhere is not a folder"):
        load_csv_data(path, DataConfig(source="labels.csv", image_dir=str(tmp_path / "nowhere")))
