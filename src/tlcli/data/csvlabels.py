"""CSV label files, the Kaggle layout: one row per image, naming the image file and its class.

The image column holds a path or an id, relative to the CSV's folder (or ``--image-dir``); an id
without extension is matched to the one image file of that name. An optional ``split`` column
places rows in train/val/test. Rows whose image is missing count as unreadable images. Each file
is one image: rows naming it again (``./x.png`` beside ``x.png``) are dropped, and a file under
two labels or in two splits is an error.
"""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tlcli.core.config import DataConfig
from tlcli.data.dataset import (
    IMAGE_COLUMNS,
    LABEL_COLUMNS,
    ImageData,
    SkippedFile,
    find_column,
    first_few,
    given_splits,
    record_fingerprints,
)
from tlcli.data.folder import SPLIT_FOLDER_NAMES, natural_key
from tlcli.data.images import IMAGE_EXTENSIONS, BadImageError, probe_image
from tlcli.data.imagesets import FileImages, ImageSet
from tlcli.core.errors import DataError
from tlcli.core.files import read_regular_file

# Label files are text: a few bytes a row, so 256 MiB is millions of rows; anything beyond these
# is not a label file, and is refused before it is parsed (or sniffed, which is quadratic).
LABEL_FILE_LIMIT = 256 << 20
HEADER_LIMIT = 64 << 10
FIELD_LIMIT = 64 << 10
_SNIFF_SAMPLE = 4096


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
    """(header, [(line number, row)]), read within bounds: a file that is not a regular file or
    is over ``LABEL_FILE_LIMIT``, a header line over ``HEADER_LIMIT``, a field over
    ``FIELD_LIMIT``: one error each, before anything large is parsed."""
    data = read_regular_file(path, limit=LABEL_FILE_LIMIT, what="CSV label file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; save the label file as UTF-8 CSV") from None
    if not text.strip():
        raise DataError(f"{path} is empty: a CSV label file needs a header row (such as image,label) and one row per image")
    header_end = text.find("\n")
    header = text[: header_end if header_end >= 0 else len(text)].strip()
    if len(header) > HEADER_LIMIT:
        raise DataError(f"{path}: the header line is {len(header):,} characters long, more than a label file's {HEADER_LIMIT:,}; "
                        "is it a CSV label file (image,label header, one row per image)?")
    try:
        dialect = csv.Sniffer().sniff(header[:_SNIFF_SAMPLE], delimiters=",;\t")
    except csv.Error:  # one column, or nothing to tell the delimiter by
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
    previous_limit = csv.field_size_limit(FIELD_LIMIT)
    try:
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as exc:
        raise DataError(f"{path}, line {reader.reader.line_num}: {exc}") from None  # the DictReader still holds the line before
    finally:
        csv.field_size_limit(previous_limit)
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


@dataclass(frozen=True)
class _Row:
    line: int
    split: str
    file: Path
    key: str  # the image as the CSV names it
    label: str


def _rows(rows: list[tuple[int, dict]], columns: tuple[str, str, str | None], base: Path, path: Path):
    """(rows whose image is usable, unreadable images, rows without image or label)."""
    image_column, label_column, split_column = columns
    where = str(path)
    finder = _Finder(base)
    found: list[_Row] = []
    bad: list[SkippedFile] = []
    ignored: list[SkippedFile] = []
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
        found.append(_Row(line, split, file, value, label))
    return found, bad, ignored


def _once_per_file(found: list[_Row], path: Path) -> tuple[list[_Row], list[SkippedFile], list[str]]:
    """One row per image file (by resolved path: ``./x.png`` is ``x.png``): a repeated row is
    dropped and noted; a file under two labels or in two splits is an error listing them."""
    first: dict[Path, _Row] = {}
    kept: list[_Row] = []
    repeated: list[SkippedFile] = []
    labels: dict[Path, str] = {}  # the first clash of each file
    splits: dict[Path, str] = {}
    for row in found:
        resolved = row.file.resolve()
        seen = first.setdefault(resolved, row)
        if seen is row:
            kept.append(row)
        elif seen.label != row.label:
            labels.setdefault(resolved, f"{seen.key} (line {seen.line}: {seen.label}, line {row.line}: {row.label})")
        elif seen.split != row.split:
            splits.setdefault(resolved, f"{seen.key} (line {seen.line}: {seen.split}, line {row.line}: {row.split})")
        else:
            repeated.append(SkippedFile(f"{path}, line {row.line}", f"{row.key}: the file line {seen.line} lists"))
    for clashes, what, fix in ((list(labels.values()), "under two labels", "give each image one label"),
                               (list(splits.values()), "in two splits", "list each image in one split")):
        if clashes:
            raise DataError(f"{path} lists {len(clashes)} image file{'s' if len(clashes) > 1 else ''} {what}: {first_few(clashes)}; {fix}")
    notes = [f"dropped {len(repeated)} row{'s' if len(repeated) > 1 else ''} naming an image file an earlier row names "
             f"(first: {repeated[0].path}: {repeated[0].reason})"] if repeated else []
    return kept, repeated, notes


def load_csv_data(path: Path, config: DataConfig) -> ImageData:
    columns, rows = _read(path)
    where = str(path)
    image_column = find_column(columns, config.image_column, IMAGE_COLUMNS, what="image", option="--image-column", where=where)
    label_column = find_column(columns, config.label_column, LABEL_COLUMNS, what="label", option="--label-column", where=where)
    split_column = next((c for c in columns if c.strip().lower() == "split" and c not in (image_column, label_column)), None)
    base = Path(config.image_dir).expanduser() if config.image_dir else path.parent
    if not base.is_dir():
        raise DataError(f"--image-dir {base} is not a folder")
    found, bad, ignored = _rows(rows, (image_column, label_column, split_column), base, path)
    found, repeated, notes = _once_per_file(found, path)
    classes = sorted({row.label for row in found}, key=natural_key)
    if len(classes) < 2:
        unreadable = f" ({len(bad)} rows name images that cannot be read: run 'tlcli data check')" if bad else ""
        raise DataError(f"{path} has {len(classes)} class{'es' if len(classes) != 1 else ''} with usable images{unreadable}; "
                        "a classifier needs at least two")
    index_of = {name: index for index, name in enumerate(classes)}
    given = {}
    for split in ("train", "val", "test"):
        picked = [row for row in found if row.split == split]
        if picked:
            given[split] = ListedImages(base, [r.file for r in picked], [index_of[r.label] for r in picked], [r.key for r in picked])
    if "train" not in given:
        raise DataError(f"{path}: no usable row has split 'train'; every class needs training images")
    splits, info, more, duplicates = given_splits(given, classes, val_fraction=config.val_split, test_fraction=config.test_split,
                                                  seed=config.seed)
    info.update(image_column=image_column, label_column=label_column, split_column=split_column)
    record_fingerprints(info, splits, classes)
    data = ImageData(str(path), "csv", classes, splits, info, duplicates=repeated + duplicates, notes=notes + more, root=str(base))
    data.bad_files, data.ignored_files = bad, ignored
    return data
