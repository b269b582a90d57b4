"""Indexable collections of labelled images, whether files on disk or arrays in memory.

The rest of tlcli sees only ``ImageSet``: ``len``, ``labels``, ``load(i)`` and ``name(i)``.
``digest`` identifies the contents, so caches on disk know when they are stale.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from tlcli.data.digests import file_digests
from tlcli.data.images import load_image


def digest_lines(lines) -> str:
    hasher = hashlib.sha256()
    for line in lines:
        hasher.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return hasher.hexdigest()


class ImageSet:
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int, *, draft_size: int | None = None) -> Image.Image:
        """The decoded image, RGB or L; raises BadImageError for a file that cannot be used.

        ``draft_size``: see ``load_image``."""
        raise NotImplementedError

    def digest(self) -> str:
        """Changes when any image, label or the order does: caches on disk are keyed by it."""
        raise NotImplementedError

    def name(self, index: int) -> str:
        """How the user finds this image again: a path, or ``<set>/<index>`` for built-in sets."""
        raise NotImplementedError

    def key(self, index: int) -> str:
        """A name that does not depend on where the data set lives; splits are decided by it."""
        return self.name(index)

    def revisions(self) -> list[str]:
        """What identifies the contents beyond keys and labels (a Hugging Face dataset's
        fingerprint), so that ``evaluate`` notices new contents under the same keys."""
        return []

    def content_digests(self) -> list[str] | None:
        """A digest of each image's stored bytes, to find the same image under two names;
        None where a source is used as published (the built-in sets)."""
        return None

    def subset(self, indices: Sequence[int]) -> ImageSet:
        raise NotImplementedError

    def concat(self, other: ImageSet) -> ImageSet:
        raise NotImplementedError


class FileImages(ImageSet):
    def __init__(self, root: Path, paths: Sequence[Path], labels: Sequence[int]):
        self.root = root
        self.paths = list(paths)
        self.labels = list(labels)

    def load(self, index: int, *, draft_size: int | None = None) -> Image.Image:
        return load_image(self.paths[index], draft_size=draft_size)

    def digest(self) -> str:
        def stat(path: Path) -> str:
            try:
                info = path.stat()
            except OSError:
                return "missing"
            return f"{info.st_size}:{info.st_mtime_ns}"

        return digest_lines(f"{path}\t{stat(path)}\t{label}" for path, label in zip(self.paths, self.labels))

    def name(self, index: int) -> str:
        return str(self.paths[index])

    def key(self, index: int) -> str:
        return self.paths[index].relative_to(self.root).as_posix()

    def content_digests(self) -> list[str]:
        return file_digests(self.root, self.paths)

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

    def load(self, index: int, *, draft_size: int | None = None) -> Image.Image:
        return Image.fromarray(self.pixels[index], mode="L" if self.pixels.ndim == 3 else "RGB")

    def digest(self) -> str:
        hasher = hashlib.sha256(np.ascontiguousarray(self.pixels).data)
        hasher.update(repr((self.labels, self.names)).encode())
        return hasher.hexdigest()

    def name(self, index: int) -> str:
        return self.names[index]

    def subset(self, indices: Sequence[int]) -> ArrayImages:
        picked = list(indices)
        return ArrayImages(self.pixels[picked], [self.labels[i] for i in picked], [self.names[i] for i in picked])

    def concat(self, other: ImageSet) -> ArrayImages:
        assert isinstance(other, ArrayImages)
        return ArrayImages(np.concatenate([self.pixels, other.pixels]), self.labels + other.labels, self.names + other.names)
