"""What a data source resolves to: classes, three splits, and what was skipped and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tlcli.data.imagesets import ImageSet
from tlcli.data.splits import SplitIndices, fingerprint, stratified_folds, stratified_split
from tlcli.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass
class ImageData:
    source: str  # as the user named it
    kind: str  # folder | builtin | torchvision
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


def record_fingerprints(info: dict[str, Any], splits: dict[str, ImageSet], classes: list[str]) -> None:
    info["fingerprints"] = {
        split: fingerprint(f"{images.key(i)}\t{classes[images.labels[i]]}" for i in range(len(images)))
        for split, images in splits.items()
    }


def too_many_bad(bad: int, usable: int, max_bad: float) -> bool:
    """``max_bad`` below 1 is a fraction of all images, else a count."""
    total = usable + bad
    return bad > (max_bad * total if max_bad < 1 else max_bad)


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
