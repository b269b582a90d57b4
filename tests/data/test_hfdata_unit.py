"""``tlcli.data.hfdata``, function by function, on tiny ``datasets`` objects built in the test:
split names, image and label column detection, class names from a ClassLabel or the values,
what a row stores of its image, and ``load_hf_data`` on a parquet file with a duplicate, an
unreadable and an unlabelled row. (tests/data/test_hfdata.py covers the command line.)"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlcli.core.config import DataConfig
from tlcli.core.errors import DataError
from tlcli.data import hfdata
from tlcli.data.images import BadImageError

datasets = pytest.importorskip("datasets")
pytestmark = pytest.mark.usefixtures("isolated")


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _table(columns: dict, features: dict | None = None):
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features) if features else None)


def _config(**given) -> DataConfig:
    return DataConfig(source="hf:x", **given)


def test_splits_maps_the_usual_names_and_notes_the_others():
    train, valid, extra = object(), object(), object()
    named, notes = hfdata._splits({"train": train, "Validation": valid, "unsupervised": extra}, "imdb")
    assert named == {"train": train, "val": valid}
    assert notes == ["split 'unsupervised' of imdb is not train, validation or test: not used"]


def test_a_single_split_of_any_name_is_the_pool_to_carve_from():
    only = object()
    named, notes = hfdata._splits({"data": only}, "set")
    assert named == {"train": only} and notes == ["set has the single split 'data': val and test are carved from it"]


@pytest.mark.parametrize("tables, message", [({"train": 1, "val": 2, "validation": 3}, r"set has two val splits \(train, val, validation\); keep one"),
                                             ({"test": 1, "other": 2}, r"set has no train split \(its splits: test, other\)")])
def test_splits_refuses_two_of_one_split_and_no_train_split(tables, message):
    with pytest.raises(DataError, match=message):
        hfdata._splits(tables, "set")


def test_columns_are_the_one_image_and_the_one_class_label_feature_whatever_their_names():
    table = _table({"pixels": [{"bytes": _png(0), "path": None}], "kind": [1], "label": ["unused"]},
                   {"pixels": datasets.Image(), "kind": datasets.ClassLabel(names=["a", "b"]), "label": datasets.Value("string")})
    assert hfdata._columns(table, _config(), "set") == ("pixels", "kind")


def test_columns_fall_back_to_common_names_and_pick_among_several_typed_ones():
    untyped = _table({"id": ["0.png"], "Category": ["cat"]})
    assert hfdata._columns(untyped, _config(), "set") == ("id", "Category")
    two_images = _table({"mask": [{"bytes": _png(0), "path": None}], "image": [{"bytes": _png(1), "path": None}], "label": [0]},
                        {"mask": datasets.Image(), "image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    assert hfdata._columns(two_images, _config(), "set") == ("image", "label")


def test_columns_given_by_the_user_win_and_a_missing_one_is_an_error():
    table = _table({"img": [{"bytes": _png(0), "path": None}], "label": [0], "coarse": [1]},
                   {"img": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"]), "coarse": datasets.Value("int64")})
    assert hfdata._columns(table, _config(label_column="coarse"), "set") == ("img", "coarse")
    with pytest.raises(DataError, match=r"set has no column 'fine' \(--label-column\); its columns are: img, label, coarse"):
        hfdata._columns(table, _config(label_column="fine"), "set")


def test_labels_of_a_class_label_keep_its_names_and_make_negative_ones_unlabelled():
    features = {"label": datasets.ClassLabel(names=["cat", "dog", "eel"])}
    tables = {"train": _table({"label": [2, -1, 0]}, features), "test": _table({"label": [1]}, features)}
    assert hfdata._labels(tables, "label", "set") == (["cat", "dog", "eel"], {"train": [2, None, 0], "test": [1]})


def test_labels_beyond_the_class_labels_names_are_an_error_naming_the_first():
    table = _table({"label": [0, 5, 7]}).cast(datasets.Features({"label": datasets.ClassLabel(names=["a", "b"])}))
    with pytest.raises(DataError, match=r"set: 2 rows of the train split have a 'label' beyond the ClassLabel's 2 names \(first: row 1, label 5\)"):
        hfdata._labels({"train": table}, "label", "set")


def test_plain_labels_become_classes_sorted_naturally_and_empty_ones_unlabelled():
    tables = {"train": _table({"y": ["n10", "n2", "", None, "n2"]}), "test": _table({"y": ["n1", "n10"]})}
    classes, labels = hfdata._labels(tables, "y", "set")
    assert classes == ["n1", "n2", "n10"]
    assert labels == {"train": [2, 1, None, None, 1], "test": [0, 2]}


def test_a_rows_image_is_its_bytes_else_the_file_it_names(tmp_path):
    assert hfdata._stored({"bytes": b"\x89PNG", "path": "ignored.png"}) == b"\x89PNG"
    assert hfdata._stored({"bytes": None, "path": str(tmp_path / "a.png")}) == tmp_path / "a.png"
    for empty in (None, {}, {"bytes": b"", "path": ""}):
        with pytest.raises(BadImageError, match="no image in this row"):
            hfdata._stored(empty)


def test_decode_reads_stored_bytes_and_files_alike(tmp_path):
    (tmp_path / "a.png").write_bytes(_png(3))
    from_bytes = hfdata._decode({"bytes": _png(3)}, None)
    from_file = hfdata._decode({"path": str(tmp_path / "a.png")}, None)
    assert from_bytes.size == (6, 6) and np.array_equal(np.asarray(from_bytes), np.asarray(from_file))


@pytest.fixture
def parquet(tmp_path) -> Path:
    """12 labelled images of two classes, then a copy of row 0, a row that is no image and an unlabelled row."""
    images = [{"bytes": _png(i), "path": None} for i in range(12)]
    images += [{"bytes": _png(0), "path": None}, {"bytes": b"not a picture", "path": None}, {"bytes": _png(99), "path": None}]
    labels = [i % 2 for i in range(12)] + [0, 1, -1]
    table = _table({"image": images, "label": labels}, {"image": datasets.Image(), "label": datasets.ClassLabel(names=["ant", "bee"])})
    table.to_parquet(str(tmp_path / "set.parquet"))
    return tmp_path / "set.parquet"


def test_load_hf_data_reads_a_parquet_file_as_a_folder_would_be_read(parquet):
    source = f"hf:{parquet}"
    data = hfdata.load_hf_data(DataConfig(source=source, val_split=0.25, test_split=0.0))
    assert data.kind == "hf" and data.classes == ["ant", "bee"] and data.root == str(parquet)
    assert [(f.path, f.reason) for f in data.bad_files] == [(f"{source}/train/13", "not an image PIL can read")]
    assert [Path(f.path).name for f in data.duplicates] == ["12"]  # a copy of row 0: the same bytes, the same label
    assert "1 rows of the train split have no label: not used" in data.notes
    assert data.class_counts() == {"train": {"ant": 4, "bee": 4}, "val": {"ant": 2, "bee": 2}, "test": {"ant": 0, "bee": 0}}
    assert (data.split_info["image_column"], data.split_info["label_column"]) == ("image", "label")


def test_hub_images_decode_the_rows_they_name(parquet):
    data = hfdata.load_hf_data(DataConfig(source=f"hf:{parquet}", val_split=0.0, test_split=0.0))
    train = data.splits["train"]
    for index in range(len(train)):
        split, row = train.key(index).split("/")
        assert split == "train" and train.name(index) == f"hf:{parquet}/train/{row}"
        assert np.array_equal(np.asarray(train.load(index)), np.asarray(Image.open(io.BytesIO(_png(int(row))))))
    picked = train.subset([1, 0])
    assert [picked.key(0), picked.key(1)] == [train.key(1), train.key(0)] and picked.content_digests() == train.content_digests()[1::-1]


def test_load_hf_data_needs_a_dataset_name():
    with pytest.raises(DataError, match=r"--data hf: needs a dataset: hf:OWNER/NAME"):
        hfdata.load_hf_data(DataConfig(source="hf:"))


def test_an_empty_split_saved_to_disk_is_named(tmp_path):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    train = _table({"image": [{"bytes": _png(0), "path": None}], "label": [0]}, dict(features))
    empty = _table({"image": [], "label": []}, dict(features))
    datasets.DatasetDict({"train": train, "test": empty}).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(DataError, match=r"split 'test' has no rows; remove the empty split or add images to it"):
        hfdata.load_hf_data(DataConfig(source=f"hf:{tmp_path / 'saved'}"))
