"""What a data source resolves to: classes, three splits, and what was skipped and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tlcli.config import check_fractions
from tlcli.data.imagesets import ImageSet
from tlcli.data.splits import SplitIndices, fingerprint, stratified_folds, stratified_split
from tlcli.errors import DataError

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
) -> tuple[dict[str, ImageSet], dict[str, Any], list[str]]:
    """The splits a source names (train at least), with val and test, where it names none,
    carved out of train as an unsplit folder's are: seeded and stratified."""
    val = 0.0 if "val" in given else val_fraction
    test = 0.0 if "test" in given else test_fraction
    check_fractions(val, test)
    splits, info, notes = split_records(given["train"], classes, val_fraction=val, test_fraction=test, seed=seed)
    carved = [split for split in ("val", "test") if split not in given]
    splits.update((split, given[split]) for split in ("val", "test") if split in given)
    info["method"] = f"given ({', '.join(s for s in SPLITS if s in given)})" + (
        f"; {' and '.join(carved)} carved from train, stratified" if carved else "")
    return splits, info, notes


def find_column(columns: list[str], given: str | None, common: tuple[str, ...], *, what: str, option: str, where: str) -> str:
    """``given`` when ``columns`` has it, else the first of the ``common`` names present (any case)."""
    if given is not None:
        if given in columns:
            return given
        raise DataError(f"{where} has no column '{given}' ({option}); its columns are: {', '.join(columns)}")
    by_lower = {column.strip().lower(): column for column in reversed(columns)}
    for name in common:
        if name in by_lower:
            return by_lower[name]
    raise DataError(
        f"{where} has no {what} column (none of {', '.join(common)}); its columns are: {', '.join(columns)}; name it with {option}"
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


def check_bad_budget(bad: list[SkippedFile], usable: int, max_bad: float) -> None:
    if too_many_bad(len(bad), usable, max_bad):
        first = bad[0]
        raise DataError(
            f"{len(bad)} of {usable + len(bad)} images cannot be read, more than --max-bad {max_bad:g} allows "
            f"(first: {first.path}: {first.reason}); run 'tlcli data check' for the full list"
        )


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
