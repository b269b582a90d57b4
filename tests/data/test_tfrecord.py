"""TFRecord data (the flowers report's format), written by an independent implementation."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tlcli.core.config import DataConfig
from tlcli.data.sources import load_data
from tlcli.core.errors import DataError

tfrecord = pytest.importorskip("tfrecord")


def _jpeg(label: int, shade: int, size=(24, 24)) -> bytes:
    """A dark image with a bright band whose position is the class, tinted by ``shade``."""
    image = Image.new("RGB", size, (shade, 20, 40))
    image.paste((255, 255, 255), (label * 8, 0, label * 8 + 8, size[1]))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def write_records(path, count, *, classes=3, start=0, with_class=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = tfrecord.TFRecordWriter(str(path))
    for i in range(start, start + count):
        example = {"image": (_jpeg(i % classes, i * 7 % 200), "byte"), "id": (f"flower{i}".encode(), "byte")}
        if with_class:
            example["class"] = (i % classes, "int")
        writer.write(example)
    writer.close()
    return path


def test_records_load_with_labels_ids_and_pixels(tmp_path):
    write_records(tmp_path / "flowers" / "part0.tfrec", 15)
    write_records(tmp_path / "flowers" / "part1.tfrec", 15, start=15)
    data = load_data(DataConfig(str(tmp_path / "flowers" / "*.tfrec"), val_split=0.2, test_split=0.2))
    assert data.kind == "tfrecord" and data.classes == ["0", "1", "2"]
    assert sum(len(s) for s in data.splits.values()) == 30
    assert data.class_counts()["test"] == {"0": 2, "1": 2, "2": 2}
    train = data.splits["train"]
    name = train.name(0)
    number = int(name.rsplit("#flower", 1)[1])
    pixels = np.asarray(train.load(0))
    band = (number % 3) * 8 + 4
    assert pixels[12, band].min() > 240 and train.labels[0] == number % 3
    outside = 20 if band < 16 else 2
    assert abs(int(pixels[12, outside][0]) - number * 7 % 200) <= 6


def test_class_names_file_and_a_folder_source(tmp_path):
    write_records(tmp_path / "flowers" / "a.tfrecord", 9)
    (tmp_path / "names.txt").write_text("daisy\nrose\ntulip\n")
    data = load_data(DataConfig(str(tmp_path / "flowers"), class_names=str(tmp_path / "names.txt")))
    assert data.classes == ["daisy", "rose", "tulip"]
    (tmp_path / "short.txt").write_text("daisy\n")
    with pytest.raises(DataError, match="lists 1 classes but the records use label 2"):
        load_data(DataConfig(str(tmp_path / "flowers"), class_names=str(tmp_path / "short.txt")))


def test_presplit_folders_of_records(tmp_path):
    write_records(tmp_path / "f" / "train" / "t.tfrec", 12)
    write_records(tmp_path / "f" / "val" / "v.tfrec", 6, start=12)  # other images than train's
    data = load_data(DataConfig(str(tmp_path / "f")))
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 12, "val": 6, "test": 0}


def test_a_corrupt_record_names_the_file_and_offset(tmp_path):
    path = write_records(tmp_path / "f" / "x.tfrec", 4)
    raw = bytearray(path.read_bytes())
    first_length = int.from_bytes(raw[:8], "little")
    second = 12 + first_length + 4
    raw[second + 12 + 30] ^= 0xFF  # a byte inside the second record's data
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=rf"x.tfrec is corrupt at byte {second}: the record data fails its CRC"):
        load_data(DataConfig(str(path)))
    raw[second + 12 + 30] ^= 0xFF
    raw[3] ^= 0x01  # the first record's length
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="corrupt at byte 0: the record length fails its CRC"):
        load_data(DataConfig(str(path)))


def test_truncated_file_and_records_without_class(tmp_path):
    path = write_records(tmp_path / "f" / "x.tfrec", 4)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated at byte"):
        load_data(DataConfig(str(path)))
    unlabelled = write_records(tmp_path / "g" / "test.tfrec", 3, with_class=False)
    with pytest.raises(DataError, match="no int64 'class' feature"):
        load_data(DataConfig(str(unlabelled)))
    with pytest.raises(DataError, match="no TFRecord files"):
        load_data(DataConfig(str(tmp_path / "nothing" / "*.tfrec")))


def test_train_evaluate_and_check_on_records(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_records(tmp_path / "flowers" / "all.tfrec", 60)
    check = run_cli("data", "check", "flowers/all.tfrec", "--json")
    assert check.code == 0, check.stderr
    assert check.json()["kind"] == "tfrecord" and check.json()["image_sizes"]["width"]["max"] == 24
    trained = run_cli("train", "--data", "flowers/all.tfrec", "--arch", "mlp", "--epochs", "8", "--batch-size", "8", "--class-weights", "balanced",
                      "--out", "run", "--json")
    assert trained.code == 0, trained.stderr
    evaluated = run_cli("evaluate", "run", "--json")
    assert evaluated.code == 0 and evaluated.json()["images"] == 6
    assert evaluated.json()["accuracy"] > 0.8  # the band's position is easy to learn


def test_a_record_that_is_not_an_example_is_a_clear_error(tmp_path):
    import struct

    from tlcli.data.tfrecord import masked_crc

    payload = b"\x08\x01"  # a valid protobuf varint field, but not a tf.train.Example
    header = struct.pack("<Q", len(payload))
    record = header + struct.pack("<I", masked_crc(header)) + payload + struct.pack("<I", masked_crc(payload))
    (tmp_path / "odd.tfrecord").write_bytes(record)
    with pytest.raises(DataError, match="is not a tf.train.Example|has no 'image'"):
        load_data(DataConfig(str(tmp_path / "odd.tfrecord")))


def test_records_in_train_identical_to_test_records_are_dropped_from_train(tmp_path):
    write_records(tmp_path / "f" / "train" / "t.tfrec", 12)
    write_records(tmp_path / "f" / "test" / "t.tfrec", 3)  # the first three train records again
    data = load_data(DataConfig(str(tmp_path / "f")))
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 9, "val": 0, "test": 3}
    assert sorted(d.path.rsplit("#", 1)[1] for d in data.duplicates) == ["flower0", "flower1", "flower2"]
    assert any("dropped 3 duplicate images" in note for note in data.notes)


def test_an_unreadable_record_image_counts_against_max_bad(tmp_path):
    path = tmp_path / "f" / "x.tfrec"
    path.parent.mkdir(parents=True)
    writer = tfrecord.TFRecordWriter(str(path))
    for i in range(10):
        writer.write({"image": (b"not a jpeg" if i < 2 else _jpeg(i % 2, i * 9), "byte"), "class": (i % 2, "int")})
    writer.close()
    assert len(load_data(DataConfig(str(path), max_bad=2)).bad_files) == 2
    with pytest.raises(DataError, match="2 of 10 images cannot be read, more than --max-bad 1"):
        load_data(DataConfig(str(path), max_bad=1))
