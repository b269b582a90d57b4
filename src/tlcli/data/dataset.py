"""What a data source resolves to: classes, three splits, and what was skipped and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tlcli.core.config import check_fractions
from tlcli.data.imagesets import ImageSet
from tlcli.data.splits import SplitIndices, fingerprint, stratified_folds, stratified_split
from tlcli.core.errors import DataError

SPLITS = ("train", "val", "test")
# Column names that CSV label files and Hugging Face datasets commonly give the image and the label.
IMAGE_COLUMNS = ("image", "img", "image_id", "filename", "file_name", "file", "path", "id")
LABEL_COLUMNS = ("label", "labels", "class", "target", "category")


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass
class ImageData:
    source: str  # as the user named it
    kind: str  # folder | builtin | torchvision | tfrecord | hf | csv
    classes: list[str]
    splits: dict[str, ImageSet]
    # How the splits were made, recorded in checkpoints so a later command rebuilds them exactly.
    split_info: dict[str, Any]
    bad_files: list[SkippedFile] = field(default_factory=list)  # images that could not be read
    ignored_files: list[SkippedFile] = field(default_factory=list)  # files that are not images
    # Links not followed (into the data set, loops, dangling) and what two links lead to, taken once.
    skipped_links: list[SkippedFile] = field(default_factory=list)
    # Copies dropped before splitting: the same bytes as an image kept (in the same or another split).
    duplicates: list[SkippedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # warnings worth showing the user
    root: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Images per class for each split, in class order."""
        counts = {}
        for split, images in self.splits.items():
            per_label = Counter(images.labels)
            counts[split] = {name: per_label.get(index, 0) for index, name in enumerate(self.classes)}
        return counts

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "root": self.root,
            "classes": self.classes,
            "split": self.split_info,
            "counts": self.class_counts(),
            "bad_files": len(self.bad_files),
            "duplicates": len(self.duplicates),
        }


def split_records(
    images: ImageSet, classes: list[str], *, val_fraction: float, test_fraction: float, seed: int
) -> tuple[dict[str, ImageSet], dict[str, Any], list[str]]:
    """Stratified seeded split of one pool of images into train/val/test."""
    names = [images.key(i) for i in range(len(images))]
    indices: SplitIndices = stratified_split(
        names, images.labels, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, class_names=classes
    )
    splits = {split: images.subset(getattr(indices, split)) for split in SPLITS}
    info = {
        "method": "stratified",
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
    }
    return splits, info, indices.notes


def given_splits(
    given: dict[str, ImageSet], classes: list[str], *, val_fraction: float, test_fraction: float, seed: int
) -> tuple[dict[str, ImageSet], dict[str, Any], list[str], list[SkippedFile]]:
    """The splits a source names (train at least), each image once (``drop_duplicates``),
    with val and test, where it names none, carved out of train as an unsplit folder's are:
    seeded and stratified."""
    given, duplicates, notes = drop_duplicates(given, classes)
    val = 0.0 if "val" in given else val_fraction
    test = 0.0 if "test" in given else test_fraction
    check_fractions(val, test)
    splits, info, more = split_records(given["train"], classes, val_fraction=val, test_fraction=test, seed=seed)
    carved = [split for split in ("val", "test") if split not in given]
    splits.update((split, given[split]) for split in ("val", "test") if split in given)
    info["method"] = f"given ({', '.join(s for s in SPLITS if s in given)})" + (
        f"; {' and '.join(carved)} carved from train, stratified" if carved else "")
    return splits, info, notes + more, duplicates


# An image in two given splits is kept in the first of these: a test image is never trained on.
_KEEP_ORDER = ("test", "val", "train")


def drop_duplicates(given: dict[str, ImageSet], classes: list[str]) -> tuple[dict[str, ImageSet], list[SkippedFile], list[str]]:
    """Each image once, by the digest of its bytes: of byte-identical images with one label the
    first (by split, as ``_KEEP_ORDER``, then by key) is kept and the others are dropped and noted;
    byte-identical images with different labels are an error, listing them."""
    digests = {split: images.content_digests() for split, images in given.items()}
    if any(found is None for found in digests.values()):
        return given, [], []
    kept: dict[str, tuple[str, int]] = {}
    keep: dict[str, list[int]] = {split: [] for split in given}
    dropped: list[SkippedFile] = []
    conflicts: list[str] = []
    across = 0
    for split in sorted(given, key=_KEEP_ORDER.index):
        images = given[split]
        for index in sorted(range(len(images)), key=images.key):
            first = kept.setdefault(digests[split][index], (split, index))
            if first == (split, index):
                keep[split].append(index)
                continue
            other = given[first[0]]
            label, other_label = images.labels[index], other.labels[first[1]]
            if label != other_label:
                conflicts.append(f"{images.name(index)} ({classes[label]}) = {other.name(first[1])} ({classes[other_label]})")
                continue
            across += first[0] != split
            where = f" (in {first[0]})" if first[0] != split else ""
            dropped.append(SkippedFile(images.name(index), f"the same bytes as {other.name(first[1])}{where}"))
    if conflicts:
        raise DataError(
            f"{len(conflicts)} image{'s are' if len(conflicts) > 1 else ' is'} byte-identical to an image of another class: "
            f"{first_few(conflicts)}; "
            "give each image one label (remove or relabel the copies)"
        )
    if not dropped:
        return given, [], []
    note = f"dropped {len(dropped)} duplicate image{'s' if len(dropped) > 1 else ''} (byte-identical to one kept, same class"
    if across:
        note += f"; {across} of them in another split too, dropped from train or val so no test or val image is trained on"
    note += f"); first: {dropped[0].path}, {dropped[0].reason}"
    return {split: images.subset(sorted(keep[split])) for split, images in given.items()}, dropped, [note]


def first_few(items: list[str], count: int = 3, separator: str = "; ") -> str:
    """The first ``count`` of ``items``, and how many more: an error line stays one line."""
    return separator.join(items[:count]) + (f" and {len(items) - count} more" if len(items) > count else "")


def find_column(columns: list[str], given: str | None, common: tuple[str, ...], *, what: str, option: str, where: str) -> str:
    """``given`` when ``columns`` has it, else the first of the ``common`` names present (any case)."""
    listed = first_few(columns, 20, ", ")
    if given is not None:
        if given in columns:
            return given
        raise DataError(f"{where} has no column '{given}' ({option}); its columns are: {listed}")
    by_lower = {column.strip().lower(): column for column in reversed(columns)}
    for name in common:
        if name in by_lower:
            return by_lower[name]
    raise DataError(
        f"{where} has no {what} column (none of {', '.join(common)}); its columns are: {listed}; name it with {option}"
    )


def record_fingerprints(info: dict[str, Any], splits: dict[str, ImageSet], classes: list[str]) -> None:
    info["fingerprints"] = {
        split: fingerprint([*(f"{images.key(i)}\t{classes[images.labels[i]]}" for i in range(len(images))), *images.revisions()])
        for split, images in splits.items()
    }


def too_many_bad(bad: int, usable: int, max_bad: float) -> bool:
    """``max_bad`` below 1 is a fraction of all images, else a count."""
    total = usable + bad
    return bad > (max_bad * total if max_bad < 1 else max_bad)


def problems(data: ImageData, max_bad: float) -> list[str]:
    """Why ``data`` cannot be trained on, the same for every source: ``train`` refuses it
    (``require_trainable``) and ``tlcli data check`` reports it from here alone."""
    found = []
    usable = sum(len(images) for images in data.splits.values())
    if too_many_bad(len(data.bad_files), usable, max_bad):
        first = data.bad_files[0]
        found.append(f"{len(data.bad_files)} of {usable + len(data.bad_files)} images cannot be read, more than --max-bad "
                     f"{max_bad:g} allows (first: {first.path}: {first.reason})")
    # A class only in val or test: nothing to learn it from.
    found += [f"class '{name}' has no readable training images" for name, count in data.class_counts()["train"].items() if not count]
    return found


def require_trainable(data: ImageData, max_bad: float) -> None:
    found = problems(data, max_bad)
    if found:
        raise DataError(f"cannot train on {data.source}: {'; '.join(found)}; run 'tlcli data check' for the full list")


def apply_fold(data: ImageData, *, folds: int, fold: int, seed: int) -> ImageData:
    """Pool train and val, deal them into ``folds`` stratified folds, and validate on ``fold``."""
    if folds < 2:
        raise DataError(f"cross-validation needs at least 2 folds, got {folds}")
    if not 0 <= fold < folds:
        raise DataError(f"fold {fold} does not exist in {folds} folds")
    pool = data.splits["train"].concat(data.splits["val"]) if len(data.splits["val"]) else data.splits["train"]
    smallest = min(Counter(pool.labels).values())
    if smallest < folds:
        raise DataError(f"{folds}-fold cross-validation needs at least {folds} train+val images in every class; the smallest class has {smallest}")
    assignment = stratified_folds([pool.key(i) for i in range(len(pool))], pool.labels, folds=folds, seed=seed)
    data.splits["train"] = pool.subset([i for i, f in enumerate(assignment) if f != fold])
    data.splits["val"] = pool.subset([i for i, f in enumerate(assignment) if f == fold])
    data.split_info = {**data.split_info, "folds": folds, "fold": fold}
    record_fingerprints(data.split_info, data.splits, data.classes)
    return data
