"""Indexable collections of labelled images, whether files on disk or arrays in memory.

The rest of tlcli sees only ``ImageSet``: ``len``, ``labels``, ``load(i)`` and ``name(i)``.
A later cache can serve decoded tensors behind the same interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from tlcli.data.images import load_image


class ImageSet:
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> Image.Image:
        """The decoded image, RGB or L; raises BadImageError for a file that cannot be used."""
        raise NotImplementedError

    def name(self, index: int) -> str:
        """How the user finds this image again: a path, or ``<set>/<index>`` for built-in sets."""
        raise NotImplementedError

    def key(self, index: int) -> str:
        """A name that does not depend on where the data set lives; splits are decided by it."""
        return self.name(index)

    def subset(self, indices: Sequence[int]) -> ImageSet:
        raise NotImplementedError

    def concat(self, other: ImageSet) -> ImageSet:
        raise NotImplementedError


class FileImages(ImageSet):
    def __init__(self, root: Path, paths: Sequence[Path], labels: Sequence[int]):
        self.root = root
        self.paths = list(paths)
        self.labels = list(labels)

    def load(self, index: int) -> Image.Image:
        return load_image(self.paths[index])

    def name(self, index: int) -> str:
        return str(self.paths[index])

    def key(self, index: int) -> str:
        return self.paths[index].relative_to(self.root).as_posix()

    def subset(self, indices: Sequence[int]) -> FileImages:
        return FileImages(self.root, [self.paths[i] for i in indices], [self.labels[i] for i in indices])

    def concat(self, other: ImageSet) -> FileImages:
        assert isinstance(other, FileImages) and other.root == self.root
        return FileImages(self.root, self.paths + other.paths, self.labels + other.labels)


class ArrayImages(ImageSet):
    """uint8 images as an (N, H, W) or (N, H, W, 3) array, as MNIST, CIFAR and digits ship."""

    def __init__(self, pixels: np.ndarray, labels: Sequence[int], names: Sequence[str]):
        if pixels.dtype != np.uint8 or pixels.ndim not in (3, 4):
            raise ValueError(f"expected uint8 (N, H, W[, 3]) pixels, got {pixels.dtype} {pixels.shape}")
        self.pixels = pixels
        self.labels = list(labels)
        self.names = list(names)

    def load(self, index: int) -> Image.Image:
        return Image.fromarray(self.pixels[index], mode="L" if self.pixels.ndim == 3 else "RGB")

    def name(self, index: int) -> str:
        return self.names[index]

    def subset(self, indices: Sequence[int]) -> ArrayImages:
        picked = list(indices)
        return ArrayImages(self.pixels[picked], [self.labels[i] for i in picked], [self.names[i] for i in picked])

    def concat(self, other: ImageSet) -> ArrayImages:
        assert isinstance(other, ArrayImages)
        return ArrayImages(np.concatenate([self.pixels, other.pixels]), self.labels + other.labels, self.names + other.names)
