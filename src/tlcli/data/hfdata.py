"""Hugging Face datasets: ``hf:OWNER/NAME`` from the Hub, ``hf:PATH`` from a local folder or parquet files.

Read through the ``datasets`` library (the ``tlcli[hf]`` extra) and its cache (``HF_HOME``,
``HF_DATASETS_OFFLINE``). Up front, the labels are read and each image's stored bytes once,
undecoded, for their header and digest (``--max-bad`` and duplicates, as for a folder); each
image stays in the memory-mapped Arrow files until it is decoded, so a data set larger than
memory trains as well.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

from tlcli.core.config import DataConfig
from tlcli.data.dataset import IMAGE_COLUMNS, LABEL_COLUMNS, ImageData, SkippedFile, find_column, given_splits, record_fingerprints
from tlcli.data.digests import bytes_digest, file_digests
from tlcli.data.folder import SPLIT_FOLDER_NAMES, natural_key
from tlcli.data.images import BadImageError, load_image, open_image_bytes, probe_image
from tlcli.data.imagesets import ImageSet, digest_lines
from tlcli.core.errors import DataError, TlcliError
from tlcli.core.files import read_regular_file

PREFIX = "hf:"
_SCAN_BATCH = 256
_FILE_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv", ".json": "json", ".jsonl": "json"}


class HubImages(ImageSet):
    """Rows of Hugging Face dataset splits; ``tables`` hold only the image column, undecoded."""

    def __init__(self, source: str, tables: dict, items: Sequence[tuple[str, int]], labels: Sequence[int], digests: Sequence[str]):
        self.source = source
        self.tables = tables
        self.items = list(items)  # (split, row)
        self.labels = list(labels)
        self.digests = list(digests)  # of each row's stored image bytes

    def load(self, index: int, *, draft_size: int | None = None) -> Image.Image:
        split, row = self.items[index]
        table = self.tables[split]
        return _decode(table[row][table.column_names[0]], draft_size)

    def revisions(self) -> list[str]:
        return sorted({f"{split}:{self.tables[split]._fingerprint}" for split, _ in self.items})

    def digest(self) -> str:
        return digest_lines([*self.revisions(), *(f"{split}/{row}\t{label}" for (split, row), label in zip(self.items, self.labels))])

    def name(self, index: int) -> str:
        return f"{self.source}/{self.key(index)}"

    def key(self, index: int) -> str:
        split, row = self.items[index]
        return f"{split}/{row}"

    def content_digests(self) -> list[str]:
        return self.digests

    def subset(self, indices: Sequence[int]) -> HubImages:
        return HubImages(self.source, self.tables, [self.items[i] for i in indices], [self.labels[i] for i in indices],
                         [self.digests[i] for i in indices])

    def concat(self, other: ImageSet) -> HubImages:
        assert isinstance(other, HubImages)
        return HubImages(self.source, {**self.tables, **other.tables}, self.items + other.items, self.labels + other.labels,
                         self.digests + other.digests)


def _stored(cell: dict | None) -> bytes | Path:
    """What a row holds of its image: the encoded bytes, else the file they name."""
    cell = cell or {}
    if cell.get("bytes"):
        return cell["bytes"]
    if cell.get("path"):
        return Path(cell["path"])
    raise BadImageError("no image in this row")


def _decode(cell: dict | None, draft_size: int | None) -> Image.Image:
    stored = _stored(cell)
    return open_image_bytes(stored, draft_size=draft_size) if isinstance(stored, bytes) else load_image(stored, draft_size=draft_size)


def _scan(source: str, split: str, table, rows: list[int], root: Path) -> tuple[list[int], list[str], list[SkippedFile]]:
    """One pass over the rows' stored images, header only, never decoded: (readable rows, the
    digest of each, unreadable ones), so ``--max-bad`` and the duplicate check see them as a
    folder's are."""
    wanted = set(rows)
    readable: list[int] = []
    digests: dict[int, str] = {}
    files: dict[int, Path] = {}
    bad = []
    column = table.column_names[0]
    for start in range(0, len(table), _SCAN_BATCH):
        for row, cell in enumerate(table[start : start + _SCAN_BATCH][column], start):
            if row not in wanted:
                continue
            try:
                stored = _stored(cell)
                probe_image(stored)
            except BadImageError as exc:
                bad.append(SkippedFile(f"{source}/{split}/{row}", str(exc)))
                continue
            readable.append(row)
            if isinstance(stored, bytes):
                digests[row] = bytes_digest(stored)
            else:
                files[row] = stored
    digests.update(zip(files, file_digests(root, list(files.values()))))
    return readable, [digests[row] for row in readable], bad


def _datasets():
    try:
        import datasets
    except ImportError:
        raise DataError("--data hf:... needs the datasets library: pip install 'tlcli[hf]'") from None
    return datasets


@contextmanager
def _quiet(datasets):
    """The Hub's retry warnings would print beside our one error, and progress bars in a cron
    log are noise; a person at a terminal still sees a long download's bars."""
    from huggingface_hub.utils import logging as hub_logging

    levels = datasets.utils.logging.get_verbosity(), hub_logging.get_verbosity()
    bars = datasets.is_progress_bar_enabled()
    datasets.utils.logging.set_verbosity_error()
    hub_logging.set_verbosity_error()
    if not sys.stderr.isatty():
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.utils.logging.set_verbosity(levels[0])
        hub_logging.set_verbosity(levels[1])
        if bars:
            datasets.enable_progress_bars()


def _open(name: str) -> dict:
    """{split name: Dataset} of a Hub name, a local dataset folder, or data files."""
    datasets = _datasets()
    path = Path(name).expanduser()
    saved = (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()
    if saved:
        _refuse_empty_saved_splits(path, name)
    try:
        with _quiet(datasets):
            if saved:
                loaded = datasets.load_from_disk(str(path))  # written by save_to_disk
            elif not path.is_dir() and path.suffix.lower() in _FILE_BUILDERS:
                loaded = datasets.load_dataset(_FILE_BUILDERS[path.suffix.lower()], data_files=str(path))
            else:
                loaded = datasets.load_dataset(name)  # a Hub name, or a folder laid out as a Hub repository
    except ConnectionError as exc:
        offline = datasets.config.HF_DATASETS_OFFLINE or getattr(datasets.config, "HF_HUB_OFFLINE", False)
        raise DataError(
            f"cannot load the Hugging Face dataset '{name}': it is not in the cache ({datasets.config.HF_DATASETS_CACHE}) "
            f"and the Hub cannot be reached ({'HF_DATASETS_OFFLINE or HF_HUB_OFFLINE is set' if offline else exc}); "
            "load it once with a network connection, or set HF_HOME to a cache that holds it"
        ) from None
    except Exception as exc:  # datasets raises a mix of FileNotFoundError, ValueError and its own errors
        empty = re.search(r'"([^"]*)" corresponds to no data', str(exc))  # a split's data files hold no rows
        if empty:
            raise DataError(f"{name}: split '{empty.group(1)}' has no rows; remove the empty split or add images to it") from None
        raise DataError(f"cannot load the Hugging Face dataset '{name}': {exc}") from None
    tables = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    empty = [split for split, table in tables.items() if len(table) == 0]
    if empty:
        raise DataError(f"{name}: split {', '.join(repr(s) for s in empty)} has no rows; remove the empty split or add images to it")
    return tables


def _refuse_empty_saved_splits(path: Path, name: str) -> None:
    """save_to_disk writes an empty split without data files, which load_from_disk then fails on
    with an IndexError: name the split instead."""
    for state in [path / "state.json", *sorted(path.glob("*/state.json"))]:
        try:
            files = json.loads(read_regular_file(state, limit=1 << 20, what="dataset state file")).get("_data_files")
        except (TlcliError, ValueError, AttributeError):
            continue  # unreadable or odd: load_from_disk's own error says more
        if files == []:
            split = state.parent.name if state.parent != path else "train"
            raise DataError(f"{name}: split '{split}' has no rows; remove the empty split or add images to it")


def _splits(tables: dict, name: str) -> tuple[dict, list[str]]:
    """{train|val|test: Dataset}: the usual split names; one split alone is the pool to carve from."""
    named, notes = {}, []
    for split, table in tables.items():
        ours = SPLIT_FOLDER_NAMES.get(split.lower())
        if ours is None:
            notes.append(f"split '{split}' of {name} is not train, validation or test: not used")
        elif ours in named:
            raise DataError(f"{name} has two {ours} splits ({', '.join(tables)}); keep one")
        else:
            named[ours] = table
    if "train" not in named:
        if len(tables) != 1:
            raise DataError(f"{name} has no train split (its splits: {', '.join(tables)})")
        only = next(iter(tables))
        named, notes = {"train": tables[only]}, [f"{name} has the single split '{only}': val and test are carved from it"]
    return named, notes


def _columns(table, config: DataConfig, name: str) -> tuple[str, str]:
    """The image and label columns: as given, else the one Image and ClassLabel feature, else common names."""
    datasets = _datasets()
    features = table.features
    columns = list(features)
    chosen = []
    for what, kind, given, common in (("image", datasets.Image, config.image_column, IMAGE_COLUMNS),
                                      ("label", datasets.ClassLabel, config.label_column, LABEL_COLUMNS)):
        typed = [column for column in columns if isinstance(features[column], kind)]
        if given is None and len(typed) == 1:
            chosen.append(typed[0])
        else:  # several typed columns: a common name among them
            among = typed if given is None and typed else columns
            chosen.append(find_column(among, given, common, what=what, option=f"--{what}-column", where=name))
    return chosen[0], chosen[1]


def _labels(tables: dict, column: str, name: str) -> tuple[list[str], dict[str, list]]:
    """Class names and each split's labels (None for an unlabelled row): a ClassLabel's own names,
    else the distinct values, sorted naturally."""
    feature = next(iter(tables.values())).features[column]
    values = {split: list(table[column]) for split, table in tables.items()}
    if isinstance(feature, _datasets().ClassLabel):
        names = list(feature.names)
        for split, split_values in values.items():
            beyond = [(row, v) for row, v in enumerate(split_values) if v is not None and v >= len(names)]
            if beyond:
                row, value = beyond[0]
                rows = f"{len(beyond)} rows of the {split} split have" if len(beyond) > 1 else f"1 row of the {split} split has"
                raise DataError(f"{name}: {rows} a '{column}' beyond the ClassLabel's {len(names)} names "
                                f"(first: row {row}, label {value}); fix the labels or the ClassLabel's names")
        return names, {split: [v if v is not None and v >= 0 else None for v in vs] for split, vs in values.items()}
    classes = sorted({str(v) for vs in values.values() for v in vs if v is not None and str(v) != ""}, key=natural_key)
    index_of = {name: index for index, name in enumerate(classes)}
    return classes, {split: [index_of.get(str(v)) if v is not None else None for v in vs] for split, vs in values.items()}


def load_hf_data(config: DataConfig) -> ImageData:
    name = config.source[len(PREFIX):]
    if not name:
        raise DataError("--data hf: needs a dataset: hf:OWNER/NAME on the Hugging Face Hub, or hf:PATH to a local one")
    tables, notes = _splits(_open(name), name)
    image_column, label_column = _columns(tables["train"], config, name)
    missing = [f"'{c}' in {split}" for split, table in tables.items() for c in (image_column, label_column) if c not in table.column_names]
    if missing:
        raise DataError(f"{name}: the splits differ in their columns: no {', '.join(missing)}")
    classes, labels = _labels(tables, label_column, name)
    try:
        images = {split: table.select_columns([image_column]).cast_column(image_column, _datasets().Image(decode=False))
                  for split, table in tables.items()}
    except (TypeError, ValueError, NotImplementedError) as exc:  # Arrow's cast errors derive from these
        raise DataError(f"{name}: column '{image_column}' does not hold images ({exc})") from None
    local = Path(name).expanduser()
    given, bad = {}, []
    for split, split_labels in labels.items():
        rows = [row for row, label in enumerate(split_labels) if label is not None]
        if len(rows) < len(split_labels):
            notes.append(f"{len(split_labels) - len(rows)} rows of the {split} split have no label: not used")
        rows, digests, unreadable = _scan(config.source, split, images[split], rows, local)
        bad += unreadable
        if rows:
            given[split] = HubImages(config.source, images, [(split, row) for row in rows], [split_labels[row] for row in rows], digests)
    if "train" not in given or len(classes) < 2:
        raise DataError(f"{name}: a classifier needs labelled training images of at least two classes (found {len(classes)} classes)")
    splits, info, more, duplicates = given_splits(given, classes, val_fraction=config.val_split, test_fraction=config.test_split,
                                                  seed=config.seed)
    info.update(image_column=image_column, label_column=label_column)
    record_fingerprints(info, splits, classes)
    data = ImageData(config.source, "hf", classes, splits, info, duplicates=duplicates, notes=notes + more,
                     root=str(local) if local.exists() else None)
    data.bad_files = bad
    return data
