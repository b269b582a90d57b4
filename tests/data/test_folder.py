"""Image folders as data: layouts, every bad input of the design, and the split."""

from __future__ import annotations

import itertools
import random
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from tests.helpers import make_class_folder, write_image
from tlcli.core.config import DataConfig
from tlcli.data import images as image_module
from tlcli.data.folder import natural_key
from tlcli.data.loading import TransformedImages, collate
from tlcli.data.sources import load_data
from tlcli.data.splits import stratified_split
from tlcli.core.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")
pytestmark = pytest.mark.usefixtures("isolated")


def _load(source, **overrides):
    return load_data(DataConfig(source=str(source), **overrides))


def _keys(data, split):
    images = data.splits[split]
    return [images.key(i) for i in range(len(images))]


def _all_keys(data):
    return sorted(key for split in SPLITS for key in _keys(data, split))


def _layout(data):
    """Every split as (key, class name) pairs: what decides training, independent of the root."""
    return {
        split: sorted((data.splits[split].key(i), data.classes[label]) for i, label in enumerate(data.splits[split].labels))
        for split in SPLITS
    }


def _one_line(message: str) -> bool:
    return bool(message) and "\n" not in message and message.strip() == message


# --- structure -------------------------------------------------------------------------------


def test_missing_folder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as caught:
        _load("no-such-set")
    message = str(caught.value)
    assert _one_line(message)
    assert "no-such-set" in message and "not a folder" in message and "digits" in message


def test_a_file_is_not_a_data_folder(tmp_path):
    path = write_image(tmp_path / "single.png")
    with pytest.raises(DataError, match="is not a folder"):
        _load(path)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is empty") as caught:
        _load(tmp_path / "empty")
    assert _one_line(str(caught.value)) and "<class>" in str(caught.value)


def test_folder_with_only_hidden_junk_is_empty(tmp_path):
    root = tmp_path / "junk"
    write_image(root / ".git" / "objects" / "a.png")
    write_image(root / ".ipynb_checkpoints" / "b.png")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    with pytest.raises(DataError, match="is empty"):
        _load(root)


def test_images_directly_in_the_root_without_class_folders(tmp_path):
    root = tmp_path / "flat"
    for i in range(3):
        write_image(root / f"{i}.jpg", fmt="JPEG", seed=i)
    with pytest.raises(DataError, match="3 images but no class folders") as caught:
        _load(root)
    assert _one_line(str(caught.value))


def test_a_single_class_is_not_enough(tmp_path):
    make_class_folder(tmp_path / "one", {"cats": 4})
    with pytest.raises(DataError, match=r"single class \('cats'\)") as caught:
        _load(tmp_path / "one")
    assert _one_line(str(caught.value))


def test_an_empty_class_folder_is_named(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 4, "b": 4})
    (root / "ghost").mkdir()
    with pytest.raises(DataError, match="'ghost'.*no readable images") as caught:
        _load(root)
    assert _one_line(str(caught.value))


def test_a_class_of_only_unreadable_files_is_named_even_when_bad_files_are_tolerated(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 4, "b": 4})
    (root / "broken").mkdir()
    (root / "broken" / "zero.jpg").write_bytes(b"")
    (root / "broken" / "text.png").write_text("not a png")
    with pytest.raises(DataError, match="'broken'.*no readable images"):
        _load(root, max_bad=100)


def test_a_class_of_only_non_image_files_is_named(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 4, "b": 4})
    (root / "docs").mkdir()
    (root / "docs" / "readme.txt").write_text("hello")
    with pytest.raises(DataError, match="'docs'"):
        _load(root)


# --- what is and is not data -----------------------------------------------------------------


def test_hidden_folders_and_files_never_become_classes_or_images(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 5, "b": 5})
    write_image(root / ".git" / "objects" / "blob.png")
    write_image(root / ".ipynb_checkpoints" / "c.png")
    write_image(root / "a" / ".ipynb_checkpoints" / "0-checkpoint.png")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "a" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "a" / "._0.png").write_bytes(b"\x00\x05\x16\x07AppleDouble junk")  # AppleDouble: not a PNG
    write_image(root / "b" / "._real-looking.jpg", fmt="JPEG")
    (root / "b" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    write_image(root / "__MACOSX" / "a" / "._0.png")  # left by unzipping a macOS archive
    data = _load(root)
    assert data.classes == ["a", "b"]
    keys = _all_keys(data)
    assert keys == sorted([f"a/{i}.png" for i in range(5)] + [f"b/{i}.png" for i in range(5)])
    assert not data.bad_files and not data.ignored_files


def test_non_image_files_are_ignored_and_listed_with_a_reason(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 5, "b": 5})
    (root / "a" / "notes.txt").write_text("hello")
    (root / "b" / "README").write_text("no extension")
    data = _load(root)
    ignored = {Path(f.path).name: f.reason for f in data.ignored_files}
    assert set(ignored) == {"notes.txt", "README"}
    assert ".txt" in ignored["notes.txt"] and "no extension" in ignored["README"]
    assert len(_all_keys(data)) == 10 and not data.bad_files


def test_images_in_nested_folders_belong_to_their_class(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 3, "b": 3})
    write_image(root / "a" / "more" / "deep.png", seed=99)  # not a copy of a/0.png
    data = _load(root, val_split=0, test_split=0)
    assert "a/more/deep.png" in _keys(data, "train")
    assert data.splits["train"].labels[_keys(data, "train").index("a/more/deep.png")] == data.classes.index("a")


@pytest.mark.parametrize("name,fmt", [("X.JPG", "JPEG"), ("Y.PNG", "PNG"), ("Z.Jpeg", "JPEG"), ("W.TIF", "TIFF")])
def test_upper_case_extensions_are_images(tmp_path, name, fmt):
    root = make_class_folder(tmp_path / "d", {"a": 2, "b": 2})
    write_image(root / "a" / name, fmt=fmt, seed=99)
    data = _load(root, val_split=0, test_split=0)
    assert f"a/{name}" in _keys(data, "train") and not data.ignored_files


def test_png_named_jpg_is_a_usable_image(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 2, "b": 2})
    write_image(root / "a" / "really-png.jpg", fmt="PNG", seed=99)
    data = _load(root, val_split=0, test_split=0)
    index = _keys(data, "train").index("a/really-png.jpg")
    assert data.splits["train"].load(index).size == (16, 16) and not data.bad_files


# --- unreadable images and --max-bad ---------------------------------------------------------


def _with_bad_files(tmp_path, good_per_class=10):
    root = make_class_folder(tmp_path / "d", {"a": good_per_class, "b": good_per_class})
    (root / "a" / "zero.png").write_bytes(b"")
    (root / "b" / "text.jpg").write_text("not really a jpeg")
    return root


def test_unreadable_images_are_skipped_and_listed_with_reasons(tmp_path):
    root = _with_bad_files(tmp_path)
    data = _load(root, max_bad=2)
    reasons = {Path(f.path).name: f.reason for f in data.bad_files}
    assert set(reasons) == {"zero.png", "text.jpg"}
    assert "0 bytes" in reasons["zero.png"] and "not an image" in reasons["text.jpg"]
    assert len(_all_keys(data)) == 20
    assert not any(name in key for key in _all_keys(data) for name in reasons)


def test_max_bad_as_a_count(tmp_path):
    root = _with_bad_files(tmp_path)
    assert len(_load(root, max_bad=2).bad_files) == 2  # exactly at the limit is allowed
    with pytest.raises(DataError, match="2 of 22 images cannot be read") as caught:
        _load(root, max_bad=1)
    message = str(caught.value)
    assert _one_line(message) and "--max-bad 1" in message and "tlcli data check" in message
    assert "zero.png" in message or "text.jpg" in message


def test_max_bad_as_a_fraction(tmp_path):
    root = _with_bad_files(tmp_path, good_per_class=9)  # 2 bad of 20
    assert len(_load(root, max_bad=0.1).bad_files) == 2  # 10 % allowed, 10 % bad
    with pytest.raises(DataError, match="--max-bad 0.09"):
        _load(root, max_bad=0.09)
    with pytest.raises(DataError, match="--max-bad"):
        _load(root)  # the default of 5 %
    with pytest.raises(DataError, match="--max-bad 0"):
        _load(root, max_bad=0)


def test_a_decompression_bomb_in_a_folder_is_a_bad_file(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 5, "b": 5})
    side = int(image_module.MAX_PIXELS**0.5) + 50
    _blank_png(root / "a" / "bomb.png", side, side)
    data = _load(root, max_bad=1)
    assert [(Path(f.path).name, "decompression bomb" in f.reason) for f in data.bad_files] == [("bomb.png", True)]
    assert "a/bomb.png" not in _all_keys(data)


def _blank_png(path: Path, width: int, height: int) -> None:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    compressor = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)
    body = b"".join(compressor.compress(row * min(1024, height - y)) for y in range(0, height, 1024)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def test_a_truncated_jpeg_is_skipped_with_its_reason_when_training_loads_it(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 3, "b": 3})
    cut = write_image(root / "a" / "cut.jpg", size=(128, 128), fmt="JPEG", quality=95)
    cut.write_bytes(cut.read_bytes()[:3000])
    data = _load(root, val_split=0, test_split=0, max_bad=0)
    train = data.splits["train"]
    dataset = TransformedImages(train, transform=lambda image: image.size)
    batch_input = [dataset[i] for i in range(len(dataset))]
    skipped = [s[3] for s in batch_input if s[3] is not None]
    assert len(skipped) == 1 and "cut.jpg" in skipped[0] and "truncated" in skipped[0]
    assert all(s[0] == (16, 16) for s in batch_input if s[3] is None)


def test_collate_drops_the_unreadable_images_of_a_batch(tmp_path):
    import torch

    root = make_class_folder(tmp_path / "d", {"a": 2, "b": 2})
    (root / "b" / "cut.png").write_bytes(write_image(tmp_path / "src.png", size=(64, 64)).read_bytes()[:500])
    data = _load(root, val_split=0, test_split=0, max_bad=0)
    dataset = TransformedImages(data.splits["train"], transform=lambda image: torch.zeros(1))
    batch = collate([dataset[i] for i in range(len(dataset))])
    assert len(batch.labels) == 4 and len(batch.skipped) == 1 and "cut.png" in batch.skipped[0]


# --- links -----------------------------------------------------------------------------------


def _link(path: Path, target) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def _skipped(data) -> dict[str, str]:
    return {Path(f.path).name: f.reason for f in data.skipped_links}


def _each_once(classes: dict[str, int]) -> list[str]:
    return sorted(f"{name}/{i}.png" for name, count in classes.items() for i in range(count))


def test_a_link_loop_in_a_class_is_skipped_and_each_image_counted_once(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 3, "b": 3})
    _link(root / "a" / "again", ".")
    data = _load(root, val_split=0, test_split=0)
    assert _all_keys(data) == _each_once({"a": 3, "b": 3})
    assert set(_skipped(data)) == {"again"} and "inside the data folder: not followed" in _skipped(data)["again"]


def test_a_link_to_the_parent_folder_mislabels_nothing_and_leaks_nothing(tmp_path):
    root = make_class_folder(tmp_path / "d", {"circle": 10, "square": 10})
    _link(root / "circle" / "uplink", "..")
    data = _load(root)
    assert _all_keys(data) == _each_once({"circle": 10, "square": 10})  # once each, so in one split
    assert {name: sum(data.class_counts()[split][name] for split in SPLITS) for name in data.classes} == {"circle": 10, "square": 10}
    assert set(_skipped(data)) == {"uplink"} and str(root.resolve()) in _skipped(data)["uplink"]


def test_a_link_to_a_folder_above_the_data_folder_is_a_loop(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 3, "b": 3})
    write_image(tmp_path / "other-set" / "x.png")  # not this data set's: must not join class a
    _link(root / "a" / "up", "../..")
    data = _load(root, val_split=0, test_split=0)
    assert _all_keys(data) == _each_once({"a": 3, "b": 3})
    assert "(a loop)" in _skipped(data)["up"]


def test_folders_linked_in_from_outside_the_data_folder_are_data(tmp_path):
    root = make_class_folder(tmp_path / "d", {"cat": 4})
    for i in range(4):
        write_image(tmp_path / "elsewhere" / "dogs" / f"{i}.png", seed=100 + i)
    _link(root / "dog", tmp_path / "elsewhere" / "dogs")  # a whole class kept elsewhere
    write_image(tmp_path / "more-cats" / "m.png", seed=50)
    _link(root / "cat" / "more", tmp_path / "more-cats")  # part of one
    data = _load(root, val_split=0, test_split=0)
    assert data.classes == ["cat", "dog"]
    assert _all_keys(data) == sorted(_each_once({"cat": 4, "dog": 4}) + ["cat/more/m.png"])
    assert data.splits["train"].load(_keys(data, "train").index("dog/3.png")).size == (16, 16)
    assert not data.skipped_links


def test_what_two_links_lead_to_is_taken_once(tmp_path):
    kept = tmp_path / "kept"
    write_image(kept / "k.png", seed=7)
    root = make_class_folder(tmp_path / "d", {"a": 3, "b": 3})
    _link(root / "a" / "kept", kept)
    _link(root / "a" / "k.png", kept / "k.png")  # the same file again, through a file link
    _link(root / "b" / "kept-too", kept)  # the same image in another class: a leak
    _link(root / "b" / "copy.png", root / "b" / "0.png")  # a file of the data set, by another name
    data = _load(root, val_split=0, test_split=0)
    assert _all_keys(data) == sorted(_each_once({"a": 3, "b": 3}) + ["a/k.png"])  # a's files come before its folders
    skipped = _skipped(data)
    assert set(skipped) == {"k.png", "kept-too", "copy.png"}
    assert skipped["k.png"] == f"same file as {root / 'a' / 'k.png'}"
    assert f"already walked as {root / 'a' / 'kept'}" in skipped["kept-too"]
    assert "inside the data folder" in skipped["copy.png"]


def test_a_loop_between_two_folders_outside_the_data_folder_is_walked_once(tmp_path):
    write_image(tmp_path / "p" / "p.png", seed=201)
    write_image(tmp_path / "q" / "q.png", seed=202)
    _link(tmp_path / "p" / "to-q", tmp_path / "q")
    _link(tmp_path / "q" / "to-p", tmp_path / "p")  # neither holds the other: not a loop by its path
    root = make_class_folder(tmp_path / "d", {"a": 2, "b": 2})
    _link(root / "a" / "kept", tmp_path / "p")
    data = _load(root, val_split=0, test_split=0)
    assert _all_keys(data) == sorted(_each_once({"a": 2, "b": 2}) + ["a/kept/p.png", "a/kept/to-q/q.png"])
    assert _skipped(data) == {"to-p": f"leads to {(tmp_path / 'p').resolve()}, already walked as {root / 'a' / 'kept'}"}


def test_a_class_or_split_folder_linked_to_another_in_the_data_folder_is_skipped(tmp_path):
    root = tmp_path / "d"
    make_class_folder(root / "train", {"a": 3, "b": 3})
    _link(root / "train" / "also-a", "a")
    _link(root / "val", "train")  # validating on the training images
    data = _load(root)
    assert data.classes == ["a", "b"] and len(data.splits["val"]) == 0
    assert _all_keys(data) == [f"train/{key}" for key in _each_once({"a": 3, "b": 3})]
    assert set(_skipped(data)) == {"also-a", "val"}


def test_a_dangling_link_is_skipped_with_its_reason_and_not_counted_as_unreadable(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 3, "b": 3})
    _link(root / "a" / "gone.png", tmp_path / "unmounted" / "gone.png")
    _link(root / "b" / "gone-folder", tmp_path / "unmounted")
    _link(root / "gone-class", tmp_path / "unmounted")
    _link(root / "a" / "self.png", "self.png")
    data = _load(root, max_bad=0)
    assert _all_keys(data) == _each_once({"a": 3, "b": 3}) and not data.bad_files
    skipped = _skipped(data)
    assert set(skipped) == {"gone.png", "gone-folder", "gone-class", "self.png"}
    assert skipped["gone.png"] == f"link to {tmp_path / 'unmounted' / 'gone.png'}, which leads nowhere (No such file or directory)"
    assert "leads nowhere" in skipped["self.png"]


# --- class order -----------------------------------------------------------------------------


def test_numeric_class_names_sort_naturally(tmp_path):
    root = make_class_folder(tmp_path / "d", {"10": 2, "2": 2, "1": 2, "class11": 2, "class3": 2, "Class20": 2})
    assert _load(root).classes == ["1", "2", "10", "class3", "class11", "Class20"]


def test_class_order_does_not_depend_on_the_order_folders_were_made(tmp_path):
    names = ["b", "B", "a", "A", "10", "9", "x2", "x10"]
    first = make_class_folder(tmp_path / "one", {name: 2 for name in names})
    second = make_class_folder(tmp_path / "two", {name: 2 for name in reversed(names)})
    classes = _load(first).classes
    assert classes == _load(second).classes == _load(first).classes
    assert classes.index("9") < classes.index("10") and classes.index("x2") < classes.index("x10")


def test_natural_key_is_a_total_order_on_names():
    # Names that differ only in case, or in leading zeros, must still sort one way whatever
    # order the file system lists them in; otherwise class indices differ between machines.
    names = ["a", "A", "b", "B", "01", "1", "10", "2", "x02", "x2"]
    orders = {tuple(sorted(permutation, key=natural_key)) for permutation in itertools.permutations(names[:5])}
    assert len(orders) == 1
    shuffled = names[:]
    for seed in range(20):
        random.Random(seed).shuffle(shuffled)
        assert sorted(shuffled, key=natural_key) == sorted(names, key=natural_key)


def test_class_names_with_unusual_digits_do_not_crash(tmp_path):
    root = make_class_folder(tmp_path / "d", {"²": 2, "1": 2, "٣": 2})  # superscript two, Arabic-Indic three
    assert sorted(_load(root).classes) == sorted(["²", "1", "٣"])


# --- pre-split folders -----------------------------------------------------------------------


@pytest.mark.parametrize("val_name", ["val", "valid", "validation", "Val"])
def test_presplit_layout_gives_the_given_splits(tmp_path, val_name):
    root = tmp_path / "beans"
    make_class_folder(root / "train", {"healthy": 4, "rust": 3})
    make_class_folder(root / val_name, {"healthy": 2, "rust": 1}, seed=10000)
    make_class_folder(root / "test", {"rust": 1, "healthy": 1}, seed=20000)
    data = _load(root, val_split=0.5, test_split=0.4)  # fractions do not apply to a pre-split folder
    assert data.classes == ["healthy", "rust"]
    assert data.split_info["method"] == "folders"
    counts = data.class_counts()
    assert counts == {"train": {"healthy": 4, "rust": 3}, "val": {"healthy": 2, "rust": 1}, "test": {"healthy": 1, "rust": 1}}
    assert all(key.startswith("train/") for key in _keys(data, "train"))
    assert all(key.startswith(f"{val_name}/") for key in _keys(data, "val"))
    assert all(key.startswith("test/") for key in _keys(data, "test"))
    assert set(data.split_info["fingerprints"]) == set(SPLITS)


def test_presplit_without_test_folder_has_an_empty_test_split_and_a_note(tmp_path):
    root = tmp_path / "d"
    make_class_folder(root / "train", {"a": 3, "b": 3})
    make_class_folder(root / "val", {"a": 1, "b": 1}, seed=10000)
    data = _load(root)
    assert len(data.splits["test"]) == 0 and len(data.splits["val"]) == 2
    assert any("test" in note for note in data.notes)


def test_presplit_class_in_val_but_not_in_train_is_an_error(tmp_path):
    root = tmp_path / "d"
    make_class_folder(root / "train", {"a": 3, "b": 3})
    make_class_folder(root / "val", {"a": 1, "b": 1, "zebra": 1}, seed=10000)
    with pytest.raises(DataError, match="zebra") as caught:
        _load(root)
    assert _one_line(str(caught.value)) and "train" in str(caught.value)


def test_presplit_class_in_test_but_not_in_train_is_an_error(tmp_path):
    root = tmp_path / "d"
    make_class_folder(root / "train", {"a": 3, "b": 3})
    make_class_folder(root / "test", {"c": 1}, seed=20000)
    with pytest.raises(DataError, match="'?c'?"):
        _load(root)


def test_presplit_with_a_single_training_class_is_an_error(tmp_path):
    root = tmp_path / "d"
    make_class_folder(root / "train", {"a": 3})
    with pytest.raises(DataError, match="single class"):
        _load(root)


def test_split_folders_without_a_train_folder_are_an_error(tmp_path):
    # val/<class>/ and test/<class>/ but the training images in "training/": the split folders
    # must not silently become classes named "test" and "val".
    root = tmp_path / "d"
    make_class_folder(root / "training", {"a": 3, "b": 3})
    make_class_folder(root / "val", {"a": 1, "b": 1}, seed=10000)
    make_class_folder(root / "test", {"a": 1, "b": 1}, seed=20000)
    with pytest.raises(DataError, match="train"):
        _load(root)


def test_two_validation_folders_are_an_error(tmp_path):
    root = tmp_path / "d"
    make_class_folder(root / "train", {"a": 3, "b": 3})
    make_class_folder(root / "val", {"a": 1, "b": 1}, seed=10000)
    make_class_folder(root / "valid", {"a": 2, "b": 2}, seed=20000)
    with pytest.raises(DataError, match="val.*valid"):
        _load(root)


def test_a_class_named_like_a_split_is_still_a_class(tmp_path):
    root = make_class_folder(tmp_path / "d", {"test": 3, "control": 3})
    assert _load(root).classes == ["control", "test"]


# --- the split -------------------------------------------------------------------------------


def test_split_fractions_are_respected_per_class(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 50, "b": 30, "c": 7})
    data = _load(root, val_split=0.2, test_split=0.1)
    counts = data.class_counts()
    assert counts["test"] == {"a": 5, "b": 3, "c": 1}
    assert counts["val"] == {"a": 10, "b": 6, "c": 1}
    assert counts["train"] == {"a": 35, "b": 21, "c": 5}
    assert data.split_info | {"fingerprints": None} == {
        "method": "stratified", "seed": 42, "val_fraction": 0.2, "test_fraction": 0.1, "fingerprints": None,
    }
    assert sorted(_all_keys(data)) == sorted(set(_all_keys(data)))  # no image in two splits


def test_other_fractions(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 40, "b": 20})
    counts = _load(root, val_split=0.5, test_split=0.25).class_counts()
    assert counts == {"train": {"a": 10, "b": 5}, "val": {"a": 20, "b": 10}, "test": {"a": 10, "b": 5}}
    no_holdout = _load(root, val_split=0, test_split=0).class_counts()
    assert no_holdout["train"] == {"a": 40, "b": 20} and not any(no_holdout["val"].values())


def test_a_class_with_one_image_goes_to_train_with_a_note(tmp_path):
    root = make_class_folder(tmp_path / "d", {"many": 20, "lonely": 1})
    data = _load(root)
    assert data.class_counts()["train"]["lonely"] == 1
    assert data.class_counts()["val"]["lonely"] == 0 and data.class_counts()["test"]["lonely"] == 0
    assert any("'lonely'" in note and "training only" in note for note in data.notes)
    assert not any("'many'" in note for note in data.notes)


def test_every_class_keeps_a_training_image_and_small_classes_are_noted(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 2, "b": 3, "c": 30})
    data = _load(root, val_split=0.45, test_split=0.45)
    assert all(count >= 1 for count in data.class_counts()["train"].values())
    assert any("'a' has 2 images" in note for note in data.notes)


@pytest.mark.parametrize(
    "val,test,option",
    [(1.0, 0.0, "--val-split"), (0.0, 1.0, "--test-split"), (1.5, 0.1, "--val-split"), (0.5, 0.5, "sum"),
     (0.7, 0.4, "sum"), (-0.1, 0.1, "--val-split"), (0.1, -0.2, "--test-split"), (float("nan"), 0.1, "--val-split")],
)
def test_bad_fractions_are_config_errors(tmp_path, val, test, option):
    root = make_class_folder(tmp_path / "d", {"a": 4, "b": 4})
    with pytest.raises(ConfigError, match=option) as caught:
        _load(root, val_split=val, test_split=test)
    assert _one_line(str(caught.value))


def test_split_is_a_pure_function_of_names_labels_fractions_and_seed():
    names = [f"{cls}/{i}.png" for cls in "abc" for i in range(25)]
    labels = [ord(name[0]) - ord("a") for name in names]
    reference = stratified_split(names, labels, val_fraction=0.2, test_fraction=0.1, seed=7)

    def by_name(result, order):
        return {split: sorted(order[i] for i in getattr(result, split)) for split in SPLITS}

    expected = by_name(reference, names)
    for seed in range(5):
        order = list(range(len(names)))
        random.Random(seed).shuffle(order)
        shuffled_names = [names[i] for i in order]
        shuffled_labels = [labels[i] for i in order]
        result = stratified_split(shuffled_names, shuffled_labels, val_fraction=0.2, test_fraction=0.1, seed=7)
        assert by_name(result, shuffled_names) == expected


def test_same_files_created_in_another_order_split_the_same(tmp_path):
    classes = {"a": 15, "b": 12}
    first = make_class_folder(tmp_path / "one", classes)
    second = tmp_path / "two"
    for class_index, (name, count) in reversed(list(enumerate(classes.items()))):
        for i in reversed(range(count)):
            write_image(second / name / f"{i}.png", seed=class_index * 1000 + i)
    one, two = _load(first), _load(second)
    assert _layout(one) == _layout(two)
    assert one.split_info["fingerprints"] == two.split_info["fingerprints"]


def test_split_does_not_depend_on_how_the_folder_is_reached(tmp_path, monkeypatch):
    root = make_class_folder(tmp_path / "data" / "pets", {"cat": 12, "dog": 9})
    absolute = _load(root.resolve())
    monkeypatch.chdir(tmp_path)
    by_name = _load("pets")  # data/pets
    relative = _load("data/pets")
    dotted = _load("./data/../data/pets/")
    copied = _load(shutil.copytree(root, tmp_path / "elsewhere" / "renamed"))
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path / "elsewhere"))
    via_env = _load("renamed")
    for other in (by_name, relative, dotted, copied, via_env):
        assert _layout(other) == _layout(absolute)
        assert other.split_info["fingerprints"] == absolute.split_info["fingerprints"]
    assert by_name.classes == ["cat", "dog"]


def test_adding_images_to_one_class_moves_nothing_in_the_others(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 20, "b": 20, "c": 20})
    before = _layout(_load(root))
    for i in range(20, 35):
        write_image(root / "a" / f"{i}.png", seed=900 + i)
    after = _layout(_load(root))
    for split in SPLITS:
        for cls in ("b", "c"):
            assert [k for k, c in before[split] if c == cls] == [k for k, c in after[split] if c == cls]
    # The old images of the grown class do not all stay put necessarily, but none is lost.
    assert {k for split in SPLITS for k, c in after[split] if c == "a"} >= {k for split in SPLITS for k, c in before[split] if c == "a"}


def test_a_different_seed_gives_a_different_split(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 30, "b": 30})
    first, again, other = _load(root, seed=1), _load(root, seed=1), _load(root, seed=2)
    assert _layout(first) == _layout(again)
    assert _layout(first)["val"] != _layout(other)["val"]
    assert _layout(first)["test"] != _layout(other)["test"]
    assert other.class_counts() == first.class_counts()  # same sizes, other members
    assert first.split_info["fingerprints"] != other.split_info["fingerprints"]


def test_fingerprints_are_recorded_and_change_when_a_file_is_added(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 10, "b": 10})
    before = _load(root).split_info["fingerprints"]
    assert set(before) == set(SPLITS)
    assert all(len(value) == 16 and int(value, 16) >= 0 for value in before.values())
    assert _load(root).split_info["fingerprints"] == before
    write_image(root / "b" / "new.png", seed=77)
    after = _load(root).split_info["fingerprints"]
    assert after != before
    changed = [split for split in SPLITS if after[split] != before[split]]
    assert changed  # the split the new file joined
    (root / "b" / "new.png").unlink()
    assert _load(root).split_info["fingerprints"] == before


def test_fingerprints_change_when_a_file_moves_to_another_class(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 10, "b": 10})
    before = _load(root, val_split=0, test_split=0).split_info["fingerprints"]["train"]
    (root / "a" / "3.png").rename(root / "b" / "3.png")  # same relative name in another class
    after = _load(root, val_split=0, test_split=0).split_info["fingerprints"]["train"]
    assert after != before
