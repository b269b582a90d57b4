"""Image folders: ``root/<class>/<image>`` or ``root/{train,val,test}/<class>/<image>``."""

from __future__ import annotations

import re
from pathlib import Path

from tlcli.core.config import DataConfig, check_fractions
from tlcli.data.dataset import ImageData, SkippedFile, drop_duplicates, record_fingerprints, split_records
from tlcli.data.images import BadImageError, has_image_extension, probe_image
from tlcli.data.imagesets import FileImages
from tlcli.data.walk import FolderWalk
from tlcli.core.errors import DataError

SPLIT_FOLDER_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def natural_key(text: str) -> tuple:
    """Sort key that puts ``2`` before ``10`` and ``class2`` before ``class10``.

    Names equal but for case (``A``, ``a``) fall back to the text itself, so the order never
    depends on the order the file system lists them in.
    """
    parts = [(0, int(part), part) if part.isdecimal() else (1, 0, part.lower()) for part in re.split(r"(\d+)", text) if part]
    return parts, text


class _Scan:
    """Collects the usable images of class folders, and the files and links it had to pass over."""

    def __init__(self, root: Path) -> None:
        self.walk = FolderWalk(root)
        self.bad: list[SkippedFile] = []
        self.ignored: list[SkippedFile] = []

    def visible_dirs(self, folder: Path) -> list[Path]:
        return sorted(self.walk.folders(folder), key=lambda entry: natural_key(entry.name))

    def class_images(self, class_dir: Path) -> list[Path]:
        usable = []
        for path in self.walk.files(class_dir):
            if not has_image_extension(path):
                self.ignored.append(SkippedFile(str(path), f"not an image file ({path.suffix or 'no extension'})"))
                continue
            try:
                probe_image(path)
            except BadImageError as exc:
                self.bad.append(SkippedFile(str(path), str(exc)))
                continue
            usable.append(path)
        return usable

    def classes(self, folder: Path) -> dict[str, list[Path]]:
        return {class_dir.name: self.class_images(class_dir) for class_dir in self.visible_dirs(folder)}


def _require_classes(found: dict[str, list[Path]], folder: Path, walk: FolderWalk) -> None:
    if not found:
        loose = [p for p in walk.files(folder) if has_image_extension(p)]
        if loose:
            raise DataError(
                f"{folder} holds {len(loose)} images but no class folders; put each class's images in {folder}/<class>/"
            )
        raise DataError(f"{folder} is empty: expected one folder of images per class, {folder}/<class>/<image>")
    if len(found) == 1:
        only = next(iter(found))
        raise DataError(f"{folder} has a single class ('{only}'); a classifier needs at least two class folders")
    empty = [name for name, paths in found.items() if not paths]
    if empty:
        listed = ", ".join(f"'{name}'" for name in empty)
        raise DataError(f"class folder {listed} in {folder} has no readable images; add images or remove the folder")


def load_folder(root: Path, config: DataConfig) -> ImageData:
    if not root.is_dir():
        raise DataError(f"data folder {root} is not a folder")
    scan = _Scan(root)
    split_dirs = _split_dirs(root, scan)
    if "train" in split_dirs:
        data = _load_presplit(root, split_dirs, scan)
    else:
        check_fractions(config.val_split, config.test_split)
        found = scan.classes(root)
        _require_classes(found, root, scan.walk)
        classes = list(found)
        paths = [path for name in classes for path in found[name]]
        labels = [index for index, name in enumerate(classes) for _ in found[name]]
        pool, duplicates, notes = drop_duplicates({"train": FileImages(root, paths, labels)}, classes)
        splits, info, more = split_records(
            pool["train"],
            classes,
            val_fraction=config.val_split,
            test_fraction=config.test_split,
            seed=config.seed,
        )
        data = ImageData(str(root), "folder", classes, splits, info, duplicates=duplicates, notes=notes + more, root=str(root))
    data.bad_files, data.ignored_files, data.skipped_links = scan.bad, scan.ignored, scan.walk.skipped
    record_fingerprints(data.split_info, data.splits, data.classes)
    return data


def _split_dirs(root: Path, scan: _Scan) -> dict[str, Path]:
    """The train/val/test folders of a pre-split layout; empty for a folder of classes."""
    split_dirs: dict[str, Path] = {}
    for folder in scan.visible_dirs(root):
        split = SPLIT_FOLDER_NAMES.get(folder.name.lower())
        if split is None:
            continue
        if split in split_dirs:
            raise DataError(f"{root} has both {split_dirs[split].name}/ and {folder.name}/; keep one folder per split")
        split_dirs[split] = folder
    # val/<class>/ or test/<class>/ without train/: not classes named "val" and "test".
    if "train" not in split_dirs and any(scan.visible_dirs(folder) for folder in split_dirs.values()):
        found = " and ".join(f"{folder.name}/" for folder in split_dirs.values())
        raise DataError(f"{root} has {found} but no train/ folder; put the training images in {root}/train/<class>/")
    return split_dirs


def _load_presplit(root: Path, split_dirs: dict[str, Path], scan: _Scan) -> ImageData:
    found = {split: scan.classes(folder) for split, folder in split_dirs.items()}
    _require_classes(found["train"], split_dirs["train"], scan.walk)
    classes = list(found["train"])
    index_of = {name: index for index, name in enumerate(classes)}
    splits = {}
    for split in ("train", "val", "test"):
        per_class = found.get(split, {})
        unknown = [name for name in per_class if name not in index_of]
        if unknown:
            raise DataError(
                f"{split_dirs[split]} has classes that train does not: {', '.join(unknown)}; "
                "every class must have training images"
            )
        paths = [path for name, class_paths in per_class.items() for path in class_paths]
        labels = [index_of[name] for name, class_paths in per_class.items() for _ in class_paths]
        splits[split] = FileImages(root, paths, labels)
    splits, duplicates, notes = drop_duplicates(splits, classes)
    if not len(splits["val"]):
        notes.append("no val/ folder: nothing to validate on during training")
    if not len(splits["test"]):
        notes.append("no test/ folder: there is no held-out test split")
    info = {"method": "folders", "folders": {split: folder.name for split, folder in split_dirs.items()}}
    return ImageData(str(root), "folder", classes, splits, info, duplicates=duplicates, notes=notes, root=str(root))
