"""CSV label files, the Kaggle layout: one row per image, naming the image file and its class.

The image column holds a path or an id, relative to the CSV's folder (or ``--image-dir``); an id
without extension is matched to the one image file of that name. An optional ``split`` column
places rows in train/val/test. Rows whose image is missing count as unreadable images.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from tlcli.config import DataConfig
from tlcli.data.dataset import (
    IMAGE_COLUMNS,
    LABEL_COLUMNS,
    ImageData,
    SkippedFile,
    check_bad_budget,
    find_column,
    given_splits,
    record_fingerprints,
)
from tlcli.data.folder import SPLIT_FOLDER_NAMES, natural_key
from tlcli.data.images import IMAGE_EXTENSIONS, BadImageError, probe_image
from tlcli.data.imagesets import FileImages, ImageSet
from tlcli.errors import DataError


class ListedImages(FileImages):
    """Image files listed by a CSV, keyed by the name as written there: the split depends on
    the file's rows, not on where the images lie."""

    def __init__(self, root: Path, paths: Sequence[Path], labels: Sequence[int], keys: Sequence[str]):
        super().__init__(root, paths, labels)
        self.keys = list(keys)

    def key(self, index: int) -> str:
        return self.keys[index]

    def subset(self, indices: Sequence[int]) -> ListedImages:
        return ListedImages(self.root, [self.paths[i] for i in indices], [self.labels[i] for i in indices], [self.keys[i] for i in indices])

    def concat(self, other: ImageSet) -> ListedImages:
        assert isinstance(other, ListedImages)
        return ListedImages(self.root, self.paths + other.paths, self.labels + other.labels, self.keys + other.keys)


class _Finder:
    """Finds the file a CSV cell names; ids without extension go through one listing per folder."""

    def __init__(self, base: Path):
        self.base = base
        self._by_stem: dict[Path, dict[str, list[Path]]] = {}

    def find(self, value: str) -> tuple[Path | None, str]:
        """(the file, "") or (None, why not)."""
        candidate = self.base / value.replace("\\", "/")
        if candidate.is_file():
            return candidate, ""
        if candidate.suffix.lower() in IMAGE_EXTENSIONS:
            return None, "no such file"
        matches = self._stems(candidate.parent).get(candidate.name, [])
        if len(matches) > 1:
            return None, f"several files match it ({', '.join(sorted(p.name for p in matches))})"
        return (matches[0], "") if matches else (None, "no such file, nor one of that name with an image extension")

    def _stems(self, folder: Path) -> dict[str, list[Path]]:
        if folder not in self._by_stem:
            index: dict[str, list[Path]] = defaultdict(list)
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        path = Path(entry.path)
                        if path.suffix.lower() in IMAGE_EXTENSIONS and entry.is_file():
                            index[path.stem].append(path)
            except OSError:
                pass  # a folder that is not there: every id in it is reported missing
            self._by_stem[folder] = index
        return self._by_stem[folder]


def _read(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """(header, [(line number, row)])."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; save the label file as UTF-8 CSV") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not text.strip():
        raise DataError(f"{path} is empty: a CSV label file needs a header row (such as image,label) and one row per image")
    header = text.partition("\n")[0].strip()
    try:
        dialect = csv.Sniffer().sniff(header, delimiters=",;\t")
    except csv.Error:  # one column, or nothing to tell the delimiter by
        dialect = csv.excel
    reader = csv.DictReader(text.splitlines(keepends=True), dialect=dialect)
    try:
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as exc:
        raise DataError(f"{path}, line {reader.line_num}: {exc}") from None
    if not rows:
        raise DataError(f"{path} has a header ({header}) but no rows")
    return list(reader.fieldnames or []), rows


def _split_of(row: dict, column: str | None, where: str) -> str:
    if column is None:
        return "train"
    value = (row.get(column) or "").strip()
    split = SPLIT_FOLDER_NAMES.get(value.lower())
    if split is None:
        raise DataError(f"{where}: split '{value}' is none of {', '.join(SPLIT_FOLDER_NAMES)}")
    return split


def load_csv_data(path: Path, config: DataConfig) -> ImageData:
    columns, rows = _read(path)
    where = str(path)
    image_column = find_column(columns, config.image_column, IMAGE_COLUMNS, what="image", option="--image-column", where=where)
    label_column = find_column(columns, config.label_column, LABEL_COLUMNS, what="label", option="--label-column", where=where)
    split_column = next((c for c in columns if c.strip().lower() == "split" and c not in (image_column, label_column)), None)
    base = Path(config.image_dir).expanduser() if config.image_dir else path.parent
    if not base.is_dir():
        raise DataError(f"--image-dir {base} is not a folder")
    finder = _Finder(base)
    bad: list[SkippedFile] = []
    ignored: list[SkippedFile] = []
    found: list[tuple[str, Path, str, str]] = []  # split, file, key, label
    for line, row in rows:
        value, label = (row.get(image_column) or "").strip(), (row.get(label_column) or "").strip()
        split = _split_of(row, split_column, f"{where}, line {line}")
        if not value or not label:
            ignored.append(SkippedFile(f"{where}, line {line}", f"no {'image' if not value else 'label'}"))
            continue
        file, reason = finder.find(value)
        try:
            if file is None:
                raise BadImageError(reason)
            probe_image(file)
        except BadImageError as exc:
            bad.append(SkippedFile(str(file or base / value), f"{exc} (line {line} of {path.name})"))
            continue
        found.append((split, file, value, label))
    check_bad_budget(bad, len(found), config.max_bad)
    classes = sorted({label for *_, label in found}, key=natural_key)
    if len(classes) < 2:
        raise DataError(f"{path} has {len(classes)} class{'es' if len(classes) != 1 else ''} with usable images; a classifier needs at least two")
    index_of = {name: index for index, name in enumerate(classes)}
    given = {}
    for split in ("train", "val", "test"):
        picked = [entry for entry in found if entry[0] == split]
        if picked:
            given[split] = ListedImages(base, [e[1] for e in picked], [index_of[e[3]] for e in picked], [e[2] for e in picked])
    if "train" not in given:
        raise DataError(f"{path}: no usable row has split 'train'; every class needs training images")
    splits, info, notes = given_splits(given, classes, val_fraction=config.val_split, test_fraction=config.test_split, seed=config.seed)
    info.update(image_column=image_column, label_column=label_column, split_column=split_column)
    record_fingerprints(info, splits, classes)
    data = ImageData(str(path), "csv", classes, splits, info, notes=notes, root=str(base))
    data.bad_files, data.ignored_files = bad, ignored
    return data
