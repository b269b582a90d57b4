"""``tlcli.data.dataset``: what every source resolves to. Duplicate images dropped before
splitting (test copies kept over train ones, a copy under two labels refused), given splits
with the missing ones carved out of train, the rules that make data untrainable
(``problems``), column finding, fingerprints and k-fold re-splitting."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import write_image
from tlcli.core.errors import ConfigError, DataError
from tlcli.data import dataset
from tlcli.data.dataset import ImageData, SkippedFile
from tlcli.data.imagesets import ArrayImages, FileImages

pytestmark = pytest.mark.usefixtures("isolated")  # file digests are cached under TLCLI_CACHE_DIR


def _arrays(labels: list[int], prefix: str = "img", seed: int = 0) -> ArrayImages:
    """Distinct 4x4 grey images in memory; they have no content digests, as built-in sets."""
    pixels = np.random.default_rng(seed).integers(0, 256, (len(labels), 4, 4), dtype=np.uint8)
    return ArrayImages(pixels, labels, [f"{prefix}{i}" for i in range(len(labels))])


def _files(root: Path, layout: dict[str, list[tuple[str, int]]]) -> dict[str, FileImages]:
    """{split: FileImages} of root/<split>/<name>.png, each (name, label) a distinct image."""
    given, seed = {}, 0
    for split, entries in layout.items():
        paths = []
        for name, _ in entries:
            seed += 1
            paths.append(write_image(root / split / f"{name}.png", size=(4, 4), seed=seed))
        given[split] = FileImages(root, paths, [label for _, label in entries])
    return given


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def _data(splits: dict, classes=("a", "b"), bad: int = 0) -> ImageData:
    data = ImageData("src", "folder", list(classes), splits, {"method": "stratified"})
    data.bad_files = [SkippedFile(f"bad{i}.png", "not an image PIL can read") for i in range(bad)]
    return data


def test_class_counts_and_summary_report_images_per_class_and_split():
    data = _data({"train": _arrays([0, 0, 1]), "val": _arrays([1]), "test": _arrays([])}, classes=("a", "b", "c"))
    assert data.num_classes == 3
    assert data.class_counts() == {"train": {"a": 2, "b": 1, "c": 0}, "val": {"a": 0, "b": 1, "c": 0}, "test": {"a": 0, "b": 0, "c": 0}}
    summary = data.summary()
    assert summary["counts"] == data.class_counts() and summary["kind"] == "folder" and summary["bad_files"] == 0


def test_drop_duplicates_keeps_the_first_copy_by_key_and_notes_the_rest(tmp_path):
    given = _files(tmp_path, {"train": [("a0", 0), ("b0", 1)]})
    _copy(given["train"].paths[0], tmp_path / "train" / "a1.png")
    given["train"] = FileImages(tmp_path, [*given["train"].paths, tmp_path / "train" / "a1.png"], [0, 1, 0])
    kept, dropped, notes = dataset.drop_duplicates(given, ["a", "b"])
    assert [p.name for p in kept["train"].paths] == ["a0.png", "b0.png"] and kept["train"].labels == [0, 1]
    assert dropped == [SkippedFile(str(tmp_path / "train" / "a1.png"), f"the same bytes as {tmp_path / 'train' / 'a0.png'}")]
    assert len(notes) == 1 and notes[0].startswith("dropped 1 duplicate image (") and "another split" not in notes[0]


def test_a_copy_in_test_and_train_is_kept_in_test_so_it_is_never_trained_on(tmp_path):
    given = _files(tmp_path, {"train": [("x", 0), ("y", 1)], "test": [("t", 0)]})
    _copy(given["test"].paths[0], tmp_path / "train" / "a-copy.png")
    given["train"] = FileImages(tmp_path, [*given["train"].paths, tmp_path / "train" / "a-copy.png"], [0, 1, 0])
    kept, dropped, notes = dataset.drop_duplicates(given, ["a", "b"])
    assert [p.name for p in kept["test"].paths] == ["t.png"]
    assert [p.name for p in kept["train"].paths] == ["x.png", "y.png"]
    assert dropped[0].reason.endswith("(in test)")
    assert "1 of them in another split too" in notes[0]


def test_byte_identical_images_under_two_labels_are_an_error_naming_both(tmp_path):
    given = _files(tmp_path, {"train": [("a0", 0), ("a1", 0)]})
    _copy(given["train"].paths[0], tmp_path / "train" / "b0.png")
    given["train"] = FileImages(tmp_path, [*given["train"].paths, tmp_path / "train" / "b0.png"], [0, 0, 1])
    with pytest.raises(DataError, match=r"1 image is byte-identical to an image of another class: .*b0\.png \(b\) = .*a0\.png \(a\)"):
        dataset.drop_duplicates(given, ["a", "b"])


def test_drop_duplicates_leaves_sources_without_content_digests_alone():
    pixels = np.zeros((2, 4, 4), dtype=np.uint8)  # two identical pictures, as a built-in set may have
    given = {"train": ArrayImages(pixels, [0, 1], ["x", "y"])}
    assert dataset.drop_duplicates(given, ["a", "b"]) == (given, [], [])


def test_given_splits_carves_missing_val_and_test_from_train_stratified():
    train = _arrays([0] * 8 + [1] * 8)
    splits, info, _, duplicates = dataset.given_splits({"train": train}, ["a", "b"], val_fraction=0.25, test_fraction=0.25, seed=3)
    counts = _data(splits).class_counts()
    assert counts == {"train": {"a": 4, "b": 4}, "val": {"a": 2, "b": 2}, "test": {"a": 2, "b": 2}}
    assert info["method"] == "given (train); val and test carved from train, stratified" and duplicates == []
    again, _, _, _ = dataset.given_splits({"train": train}, ["a", "b"], val_fraction=0.25, test_fraction=0.25, seed=3)
    assert all(again[s].names == splits[s].names for s in dataset.SPLITS)  # seeded: the same split again


def test_given_splits_keeps_a_given_split_as_it_is():
    given = {"train": _arrays([0] * 4 + [1] * 4), "test": _arrays([0, 1], prefix="t")}
    splits, info, _, _ = dataset.given_splits(given, ["a", "b"], val_fraction=0.25, test_fraction=0.5, seed=0)
    assert splits["test"] is given["test"]
    assert len(splits["val"]) == 2 and len(splits["train"]) == 6  # test_fraction ignored: test is given
    assert info["method"] == "given (train, test); val carved from train, stratified"


def test_given_splits_ignores_fractions_for_splits_it_has_and_checks_the_others():
    given = {"train": _arrays([0, 1]), "val": _arrays([0, 1], prefix="v"), "test": _arrays([0, 1], prefix="t")}
    splits, info, _, _ = dataset.given_splits(given, ["a", "b"], val_fraction=0.6, test_fraction=0.6, seed=0)
    assert info["method"] == "given (train, val, test)" and len(splits["train"]) == 2
    with pytest.raises(ConfigError, match="--test-split must be at least 0 and below 1"):
        dataset.given_splits({"train": given["train"], "val": given["val"]}, ["a", "b"], val_fraction=0.2, test_fraction=1.0, seed=0)


def test_first_few_keeps_an_error_line_short():
    assert dataset.first_few(["a", "b"]) == "a; b"
    assert dataset.first_few(["a", "b", "c", "d", "e"]) == "a; b; c and 2 more"
    assert dataset.first_few(["a", "b", "c"], 2, ", ") == "a, b and 1 more"


def test_find_column_takes_the_given_column_or_the_first_common_name_in_any_case():
    find = dataset.find_column
    assert find(["id", "Label"], "id", dataset.IMAGE_COLUMNS, what="image", option="--image-column", where="x.csv") == "id"
    assert find(["File_Name", " Category "], None, dataset.LABEL_COLUMNS, what="label", option="--label-column", where="x") == " Category "
    # The order of the common names decides, not the order of the columns.
    assert find(["path", "image"], None, dataset.IMAGE_COLUMNS, what="image", option="--image-column", where="x") == "image"


def test_find_column_errors_name_the_option_and_list_the_columns():
    with pytest.raises(DataError, match=r"x\.csv has no column 'pic' \(--image-column\); its columns are: a, b"):
        dataset.find_column(["a", "b"], "pic", dataset.IMAGE_COLUMNS, what="image", option="--image-column", where="x.csv")
    with pytest.raises(DataError, match=r"x\.csv has no label column \(none of label, .*\); its columns are: a, b; name it with --label-column"):
        dataset.find_column(["a", "b"], None, dataset.LABEL_COLUMNS, what="label", option="--label-column", where="x.csv")


def test_too_many_bad_reads_a_fraction_below_one_and_a_count_from_one():
    assert not dataset.too_many_bad(1, 19, 0.05) and dataset.too_many_bad(2, 18, 0.05)  # 5 % of 20 is 1
    assert not dataset.too_many_bad(2, 0, 2) and dataset.too_many_bad(3, 100, 2)


def test_problems_lists_too_many_unreadable_images_and_classes_without_training_images():
    splits = {"train": _arrays([0, 0, 0]), "val": _arrays([1]), "test": _arrays([])}
    found = dataset.problems(_data(splits, bad=1), max_bad=0.1)
    assert found[0].startswith("1 of 5 images cannot be read, more than --max-bad 0.1 allows (first: bad0.png: not an image")
    assert found[1:] == ["class 'b' has no readable training images"]
    assert dataset.problems(_data({"train": _arrays([0, 1]), "val": _arrays([]), "test": _arrays([])}, bad=1), max_bad=1) == []
    with pytest.raises(DataError, match="cannot train on src: class 'b' has no readable training images; run 'tlcli data check'"):
        dataset.require_trainable(_data(splits), max_bad=0.1)


def test_record_fingerprints_change_with_a_label_and_not_with_the_order():
    info: dict = {}
    dataset.record_fingerprints(info, {"train": _arrays([0, 1, 1])}, ["a", "b"])
    reordered, relabelled = {}, {}
    images = _arrays([0, 1, 1])
    dataset.record_fingerprints(reordered, {"train": images.subset([2, 0, 1])}, ["a", "b"])
    dataset.record_fingerprints(relabelled, {"train": _arrays([0, 1, 0])}, ["a", "b"])
    assert info["fingerprints"]["train"] == reordered["fingerprints"]["train"] != relabelled["fingerprints"]["train"]


def test_apply_fold_pools_train_and_val_and_validates_on_one_fold():
    labels = [0] * 6 + [1] * 6
    val_sets = []
    for fold in range(3):
        data = _data({"train": _arrays(labels[:4] + labels[6:10]), "val": _arrays([0, 0, 1, 1], prefix="v", seed=1),
                      "test": _arrays([0, 1], prefix="t", seed=2)})
        test = data.splits["test"]
        folded = dataset.apply_fold(data, folds=3, fold=fold, seed=0)
        train, val = set(folded.splits["train"].names), set(folded.splits["val"].names)
        assert not train & val and len(train | val) == 12
        assert folded.splits["test"] is test and folded.split_info["folds"] == 3 and "fingerprints" in folded.split_info
        val_sets.append(val)
    assert set().union(*val_sets) == {f"img{i}" for i in range(8)} | {f"v{i}" for i in range(4)}  # each image validated once


@pytest.mark.parametrize("folds, fold, message", [(1, 0, "at least 2 folds"), (3, 3, "fold 3 does not exist in 3 folds"),
                                                  (7, 0, "needs at least 7 train\\+val images in every class; the smallest class has 6")])
def test_apply_fold_refuses_impossible_folds(folds, fold, message):
    data = _data({"train": _arrays([0] * 6 + [1] * 6), "val": _arrays([]), "test": _arrays([])})
    with pytest.raises(DataError, match=message):
        dataset.apply_fold(data, folds=folds, fold=fold, seed=0)
