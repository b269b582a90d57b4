"""TFRecord files of ``tf.train.Example`` records, read without TensorFlow.

The flowers report's format: features ``image`` (JPEG bytes), ``class`` (int64) and an
optional ``id``. Every record's length and data are checked against their masked CRC-32C, so a
corrupt file is an error naming the file and byte offset rather than silently wrong data.
Images are not kept in memory: the index remembers where each one's bytes lie.
"""

from __future__ import annotations

import glob
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from tlcli.core.config import DataConfig, check_fractions
from tlcli.data.dataset import ImageData, SkippedFile, drop_duplicates, record_fingerprints, split_records
from tlcli.data.digests import bytes_digest
from tlcli.data.folder import SPLIT_FOLDER_NAMES
from tlcli.data.images import BadImageError, open_image_bytes, probe_image
from tlcli.data.imagesets import ImageSet, digest_lines
from tlcli.core.errors import DataError
from tlcli.core.files import read_regular_file

TFRECORD_SUFFIXES = (".tfrec", ".tfrecord", ".tfrecords")
_MASK_DELTA = 0xA282EAD8
CLASS_NAMES_LIMIT = 16 << 20  # one name a line: far more classes than any data set has


def masked_crc(data: bytes) -> int:
    import crc32c

    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _varint(buffer: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(buffer):
            raise ValueError("varint runs past the end of the message")
        byte = buffer[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _fields(buffer: bytes, start: int = 0, end: int | None = None):
    """(field number, wire type, value or (offset, length) for length-delimited) of one message."""
    position, end = start, len(buffer) if end is None else end
    while position < end:
        key, position = _varint(buffer, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(buffer, position)
            yield number, wire, value
        elif wire == 2:
            length, position = _varint(buffer, position)
            if position + length > end:
                raise ValueError("a field runs past the end of the message")
            yield number, wire, (position, length)
            position += length
        elif wire == 1:
            yield number, wire, buffer[position : position + 8]
            position += 8
        elif wire == 5:
            yield number, wire, buffer[position : position + 4]
            position += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def parse_example(record: bytes) -> dict[str, tuple[str, list]]:
    """``{name: (kind, values)}``; kind is bytes/float/int64; bytes values are (offset, length) in ``record``."""
    features: dict[str, tuple[str, list]] = {}
    for number, _, span in _fields(record):
        if number != 1:
            continue
        for entry_number, _, entry in _fields(record, span[0], span[0] + span[1]):
            if entry_number != 1:
                continue
            name, feature = None, None
            for part, _, value in _fields(record, entry[0], entry[0] + entry[1]):
                if part == 1:
                    name = record[value[0] : value[0] + value[1]].decode()
                elif part == 2:
                    feature = value
            if name is not None and feature is not None:
                features[name] = _feature(record, feature)
    return features


def _feature(record: bytes, span: tuple[int, int]) -> tuple[str, list]:
    for kind_number, _, inner in _fields(record, span[0], span[0] + span[1]):
        values: list = []
        for _, wire, value in _fields(record, inner[0], inner[0] + inner[1]):
            if kind_number == 1:
                values.append(value)
            elif kind_number == 2:
                raw = record[value[0] : value[0] + value[1]] if wire == 2 else value
                values += list(struct.unpack(f"<{len(raw) // 4}f", raw))
            elif kind_number == 3:
                if wire == 2:  # packed
                    position, stop = value[0], value[0] + value[1]
                    while position < stop:
                        number, position = _varint(record, position)
                        values.append(number - (1 << 64) if number >= 1 << 63 else number)
                else:
                    values.append(value - (1 << 64) if value >= 1 << 63 else value)
        return {1: "bytes", 2: "float", 3: "int64"}[kind_number], values
    return "bytes", []


def read_records(path: Path):
    """(offset of the data, data) of every record in a TFRecord file, CRCs checked."""
    with open(path, "rb") as stream:
        offset = 0
        while True:
            header = stream.read(12)
            if not header:
                return
            if len(header) < 12:
                raise DataError(f"{path} is truncated at byte {offset}: an incomplete record header")
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc(header[:8]) != length_crc:
                raise DataError(f"{path} is corrupt at byte {offset}: the record length fails its CRC")
            data = stream.read(length)
            footer = stream.read(4)
            if len(data) < length or len(footer) < 4:
                raise DataError(f"{path} is truncated at byte {offset}: the record needs {length} bytes")
            if masked_crc(data) != struct.unpack("<I", footer)[0]:
                raise DataError(f"{path} is corrupt at byte {offset}: the record data fails its CRC")
            yield offset + 12, data
            offset += 12 + length + 4


@dataclass(frozen=True)
class RecordImage:
    path: Path
    offset: int  # of the image bytes in the file
    length: int
    name: str
    digest: str  # of the image bytes


class RecordImages(ImageSet):
    """Images inside TFRecord files, read from disk on demand."""

    def __init__(self, root: Path, items: Sequence[RecordImage], labels: Sequence[int]):
        self.root = root
        self.items = list(items)
        self.labels = list(labels)

    def load(self, index: int, *, draft_size: int | None = None) -> Image.Image:
        item = self.items[index]
        with open(item.path, "rb") as stream:
            stream.seek(item.offset)
            return open_image_bytes(stream.read(item.length), draft_size=draft_size)

    def digest(self) -> str:
        files = {item.path for item in self.items}
        stats = {path: f"{path.stat().st_size}:{path.stat().st_mtime_ns}" for path in files if path.exists()}
        return digest_lines(
            f"{item.path}\t{stats.get(item.path)}\t{item.offset}\t{item.length}\t{label}" for item, label in zip(self.items, self.labels)
        )

    def name(self, index: int) -> str:
        item = self.items[index]
        return f"{item.path}#{item.name}"

    def key(self, index: int) -> str:
        item = self.items[index]
        return f"{item.path.relative_to(self.root).as_posix()}#{item.name}"

    def content_digests(self) -> list[str]:
        return [item.digest for item in self.items]

    def subset(self, indices: Sequence[int]) -> RecordImages:
        return RecordImages(self.root, [self.items[i] for i in indices], [self.labels[i] for i in indices])

    def concat(self, other: ImageSet) -> RecordImages:
        assert isinstance(other, RecordImages) and other.root == self.root
        return RecordImages(self.root, self.items + other.items, self.labels + other.labels)


def index_files(files: Sequence[Path], root: Path, bad: list[SkippedFile], *, image_key: str = "image", label_key: str = "class") -> RecordImages:
    """Read every record once for its label, id, where its image bytes lie and their digest;
    records whose image cannot be one (by its header) go to ``bad``."""
    items: list[RecordImage] = []
    labels: list[int] = []
    for path in files:
        for number, (offset, record) in enumerate(read_records(path)):
            try:
                features = parse_example(record)
            except (ValueError, UnicodeDecodeError, TypeError, IndexError, KeyError) as exc:
                raise DataError(f"{path}: record {number} at byte {offset - 12} is not a tf.train.Example ({exc})") from None
            image, label = features.get(image_key), features.get(label_key)
            if image is None or image[0] != "bytes" or not image[1]:
                raise DataError(f"{path}: record {number} at byte {offset - 12} has no '{image_key}' bytes feature")
            if label is None or label[0] != "int64" or not label[1]:
                raise DataError(
                    f"{path}: record {number} at byte {offset - 12} has no int64 '{label_key}' feature (unlabelled test records cannot be trained on)"
                )
            identifier = features.get("id")
            name = record[identifier[1][0][0] : sum(identifier[1][0])].decode(errors="replace") if identifier and identifier[0] == "bytes" and identifier[1] else str(number)
            start, length = image[1][0]
            encoded = record[start : start + length]
            try:
                probe_image(encoded)
            except BadImageError as exc:
                bad.append(SkippedFile(f"{path}#{name}", str(exc)))
                continue
            items.append(RecordImage(path, offset + start, length, name, bytes_digest(encoded)))
            labels.append(int(label[1][0]))
    return RecordImages(root, items, labels)


def is_tfrecord_source(source: str) -> bool:
    return source.lower().endswith(TFRECORD_SUFFIXES) or (
        Path(source).is_dir() and any(p.suffix.lower() in TFRECORD_SUFFIXES for p in Path(source).rglob("*"))
    )


def _files(source: str) -> tuple[Path, list[Path]]:
    """(root, files) for a glob, a single file, or a folder searched recursively."""
    path = Path(source)
    if path.is_dir():
        return path, sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TFRECORD_SUFFIXES)
    files = sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file())
    parts = path.parts
    # The root is the folder above the first wildcard (or the file's folder): keys are relative to it.
    fixed = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), len(parts) - 1)
    return Path(*parts[:fixed]) if fixed else Path("."), files


def _class_names(path: str | None, labels: list[int]) -> list[str]:
    highest = max(labels) if labels else -1
    if path is None:
        return [str(i) for i in range(highest + 1)]
    text = read_regular_file(Path(path), limit=CLASS_NAMES_LIMIT, what="class names file")
    try:
        names = [line.strip() for line in text.decode("utf-8-sig").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise DataError(f"the class names file {path} is not UTF-8 text: give one class name a line") from None
    if highest >= len(names):
        raise DataError(f"the class names file {path} lists {len(names)} classes but the records use label {highest}")
    return names


def load_tfrecord_data(config: DataConfig) -> ImageData:
    """A TFRecord data set: ``train/``, ``val/`` and ``test/`` folders of files if present, else one pool split like a folder."""
    root, files = _files(config.source)
    if not files:
        raise DataError(f"no TFRecord files ({', '.join(TFRECORD_SUFFIXES)}) match {config.source}")
    by_split: dict[str, list[Path]] = {}
    for file in files:
        parts = file.relative_to(root).parts
        split = SPLIT_FOLDER_NAMES.get(parts[0].lower()) if len(parts) > 1 else None
        by_split.setdefault(split or "pool", []).append(file)
    bad: list[SkippedFile] = []
    if "train" in by_split:
        splits = {split: index_files(by_split.get(split, []), root, bad) for split in ("train", "val", "test")}
        classes = _class_names(config.class_names, [label for images in splits.values() for label in images.labels])
        _check_labels(splits, config.source)
        splits, duplicates, notes = drop_duplicates(splits, classes)
        info = {"method": "folders"}
    else:
        check_fractions(config.val_split, config.test_split)
        pool = index_files(files, root, bad)
        classes = _class_names(config.class_names, pool.labels)
        _check_labels({"train": pool}, config.source)
        given, duplicates, notes = drop_duplicates({"train": pool}, classes)
        splits, info, more = split_records(given["train"], classes, val_fraction=config.val_split, test_fraction=config.test_split,
                                           seed=config.seed)
        notes += more
    record_fingerprints(info, splits, classes)
    data = ImageData(config.source, "tfrecord", classes, splits, info, duplicates=duplicates, notes=notes, root=str(root))
    data.bad_files = bad
    return data


def _check_labels(splits: dict[str, RecordImages], source: str) -> None:
    if any(label < 0 for images in splits.values() for label in images.labels):
        raise DataError(f"{source}: negative class labels in the records")
