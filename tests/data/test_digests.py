"""``tlcli.data.digests``: content digests of image files, equal for equal bytes whatever the
name, kept in a store under $TLCLI_CACHE_DIR so an unchanged file is not read twice, and a store
that cannot be read or written only costs the speed-up."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers import write_image
from tlcli.data import digests

pytestmark = pytest.mark.usefixtures("isolated")


def _store_files(cache: Path) -> list[Path]:
    return sorted((cache / "digests").glob("*.json"))


def _never_hash(path):
    raise AssertionError(f"{path} was read again although it is unchanged")


def test_bytes_digest_is_a_short_stable_hex_digest_of_the_bytes():
    first = digests.bytes_digest(b"picture")
    assert first == digests.bytes_digest(b"picture") and len(first) == 32 and int(first, 16) >= 0
    assert first != digests.bytes_digest(b"picturf")


def test_file_digests_match_for_equal_bytes_under_other_names_and_differ_otherwise(tmp_path):
    a = write_image(tmp_path / "a.png", seed=1)
    copy = tmp_path / "deep" / "copy.png"
    copy.parent.mkdir()
    copy.write_bytes(a.read_bytes())
    other = write_image(tmp_path / "b.png", seed=2)
    found = digests.file_digests(tmp_path, [a, copy, other])
    assert found[0] == found[1] != found[2]


def test_a_files_digest_equals_the_digest_of_its_bytes(tmp_path):
    # Hugging Face rows mix stored bytes and file paths: both must meet in one duplicate check.
    path = write_image(tmp_path / "a.png", seed=3)
    assert digests.file_digests(tmp_path, [path]) == [digests.bytes_digest(path.read_bytes())]


def test_a_file_that_cannot_be_read_gets_a_digest_of_its_own_name(tmp_path):
    missing_one, missing_two = tmp_path / "gone1.png", tmp_path / "gone2.png"
    found = digests.file_digests(tmp_path, [missing_one, missing_two])
    assert found[0] != found[1]  # never taken for copies of each other
    assert found[0] == digests.bytes_digest(f"unreadable:{missing_one}".encode())


def test_a_second_call_reads_unchanged_files_from_the_store(tmp_path, monkeypatch):
    paths = [write_image(tmp_path / f"{i}.png", seed=i) for i in range(3)]
    first = digests.file_digests(tmp_path, paths)
    assert len(_store_files(Path(os.environ["TLCLI_CACHE_DIR"]))) == 1
    monkeypatch.setattr(digests, "_hash_file", _never_hash)
    assert digests.file_digests(tmp_path, paths) == first


def test_a_changed_file_is_hashed_again(tmp_path):
    path = write_image(tmp_path / "x.png", seed=1)
    before = digests.file_digests(tmp_path, [path])
    write_image(path, seed=2, size=(17, 17))  # another size: the store's key changes
    assert digests.file_digests(tmp_path, [path]) == [digests.bytes_digest(path.read_bytes())] != before


def test_the_store_keeps_other_splits_unchanged_files_and_forgets_removed_ones(tmp_path):
    train, val = write_image(tmp_path / "train.png", seed=1), write_image(tmp_path / "val.png", seed=2)
    digests.file_digests(tmp_path, [train])
    digests.file_digests(tmp_path, [val])
    [store] = _store_files(Path(os.environ["TLCLI_CACHE_DIR"]))
    assert sorted(key.split("\t")[0] for key in json.loads(store.read_text())) == sorted([str(train.resolve()), str(val.resolve())])
    train.unlink()
    digests.file_digests(tmp_path, [val])
    assert [key.split("\t")[0] for key in json.loads(store.read_text())] == [str(val.resolve())]


def test_each_data_folder_has_its_own_store(tmp_path):
    one = write_image(tmp_path / "one" / "a.png", seed=1)
    two = write_image(tmp_path / "two" / "a.png", seed=2)
    digests.file_digests(tmp_path / "one", [one])
    digests.file_digests(tmp_path / "two", [two])
    assert len(_store_files(Path(os.environ["TLCLI_CACHE_DIR"]))) == 2


def test_a_damaged_store_is_ignored_and_rewritten(tmp_path, monkeypatch):
    path = write_image(tmp_path / "a.png", seed=1)
    expected = digests.file_digests(tmp_path, [path])
    [store] = _store_files(Path(os.environ["TLCLI_CACHE_DIR"]))
    store.write_text('{"half a json')
    assert digests.file_digests(tmp_path, [path]) == expected
    monkeypatch.setattr(digests, "_hash_file", _never_hash)
    assert digests.file_digests(tmp_path, [path]) == expected  # readable again


def test_a_store_that_is_not_a_mapping_is_ignored(tmp_path):
    path = write_image(tmp_path / "a.png", seed=1)
    digests.file_digests(tmp_path, [path])
    [store] = _store_files(Path(os.environ["TLCLI_CACHE_DIR"]))
    store.write_text('["a list"]')
    assert digests.file_digests(tmp_path, [path]) == [digests.bytes_digest(path.read_bytes())]


def test_a_cache_folder_that_cannot_be_written_only_costs_the_speed_up(tmp_path, monkeypatch):
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TLCLI_CACHE_DIR", str(blocker))
    path = write_image(tmp_path / "a.png", seed=1)
    assert digests.file_digests(tmp_path, [path]) == [digests.bytes_digest(path.read_bytes())]
