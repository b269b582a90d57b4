"""The train/val/test split: a pure function of (names, labels, fractions, seed).

Each image's place is decided by a hash of the seed and its name, within its class, so the
same files always land in the same split whatever order the file system lists them in, and
adding images to one class moves nothing in the others.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SplitIndices:
    train: list[int]
    val: list[int]
    test: list[int]
    # Classes too small to give an image to every split, with what was done about it.
    notes: list[str] = field(default_factory=list)


def _rank(seed: int, name: str) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def stratified_split(
    names: Sequence[str],
    labels: Sequence[int],
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    class_names: Sequence[str] | None = None,
) -> SplitIndices:
    """Split per class: round(n * fraction) images to test and to val, the rest to train.

    Every class keeps at least one training image; a class with a single image goes to
    train alone and is noted.
    """
    by_class: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_class[label].append(index)
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    notes: list[str] = []
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda i: _rank(seed, names[i]))
        count = len(members)
        n_test = round(count * test_fraction)
        n_val = round(count * val_fraction)
        # Never leave a class without training images.
        while n_test + n_val >= count and (n_test or n_val):
            if n_val >= n_test and n_val:
                n_val -= 1
            else:
                n_test -= 1
        label_name = class_names[label] if class_names else str(label)
        if count > 1 and (val_fraction and not n_val or test_fraction and not n_test):
            notes.append(f"class '{label_name}' has {count} images: too few for every split")
        elif count == 1:
            notes.append(f"class '{label_name}' has 1 image: it is used for training only")
        test += members[:n_test]
        val += members[n_test : n_test + n_val]
        train += members[n_test + n_val :]
    return SplitIndices(sorted(train), sorted(val), sorted(test), notes)


def fingerprint(entries: Iterable[str]) -> str:
    """A short hash of a split's contents, to tell later whether the files changed."""
    digest = hashlib.sha256()
    for entry in sorted(entries):
        digest.update(entry.encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def stratified_folds(names: Sequence[str], labels: Sequence[int], *, folds: int, seed: int) -> list[int]:
    """The fold (0 .. folds-1) of every image: within each class, dealt round-robin in hash order."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_class[label].append(index)
    assignment = [0] * len(labels)
    for members in by_class.values():
        for position, index in enumerate(sorted(members, key=lambda i: _rank(seed, names[i]))):
            assignment[index] = position % folds
    return assignment
