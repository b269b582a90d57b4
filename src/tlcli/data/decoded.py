"""The decoded-image cache: every image decoded, resized and cropped once, kept as uint8.

Decoding a JPEG and resizing it costs a few milliseconds an image, every epoch; reading it from
this cache costs microseconds. The cached pixels are exactly what the uncached pipeline hands
to augmentation (training augmentation runs after the resize and crop), so training on them
gives the same results. The cache lives in memory, or in a ``.npy`` file that is memory-mapped
and reused by later runs on the same images.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tlcli.core.config import IMAGE_CACHE_CHOICES
from tlcli.core.cache import cache_key
from tlcli.core.files import write_file_atomically
from tlcli.data.imagesets import ImageSet
from tlcli.data.loading import TransformedImages, decoded_batches
from tlcli.data.transforms import Preprocess, build_transform
from tlcli.core.host import available_cores
from tlcli.core.errors import TlcliError

# auto keeps the pixels in memory while they take at most this share of the memory available.
MEMORY_SHARE = 0.25


@dataclass
class DecodedImages:
    pixels: np.ndarray  # uint8 (N, C, S, S); a read-only memory map when on disk
    failures: dict[int, str]  # index -> "name: reason" of images that could not be decoded
    where: str  # memory | a file path
    reused: bool = False  # read from an earlier run's file


def available_memory() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # macOS has no SC_AVPHYS_PAGES
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def cache_bytes(count: int, preprocess: Preprocess) -> int:
    return count * preprocess.channels * preprocess.input_size**2


def choose_image_cache(mode: str, count: int, preprocess: Preprocess) -> str:
    """memory | disk | off for ``mode``; auto: memory when it fits comfortably, else disk."""
    if mode not in IMAGE_CACHE_CHOICES:
        raise TlcliError(f"unknown image cache '{mode}'; choose one of {', '.join(IMAGE_CACHE_CHOICES)}")
    if mode != "auto":
        return mode
    return "memory" if cache_bytes(count, preprocess) <= MEMORY_SHARE * available_memory() else "disk"


def _fill(images: ImageSet, preprocess: Preprocess, pixels: np.ndarray, *, workers: int, progress) -> dict[int, str]:
    dataset = TransformedImages(images, build_transform(preprocess, normalize=False), draft_size=preprocess.resize_size)
    loader = DataLoader(dataset, batch_size=64, num_workers=workers, collate_fn=list)
    failures: dict[int, str] = {}
    done = 0
    progress(done)
    # No randomness here, so threads may decode in any order.
    for samples in decoded_batches(loader, threads=available_cores()):
        for image, _, index, reason in samples:
            if reason is None:
                pixels[index] = image.numpy()
            else:
                failures[index] = reason
        done += len(samples)
        progress(done)
    return failures


def decode_images(
    images: ImageSet, preprocess: Preprocess, *, where: str, cache_dir: Path | None, workers: int = 0, progress=lambda done: None
) -> DecodedImages:
    """Decode ``images`` once into uint8 pixels, in memory or (``where='disk'``) in ``cache_dir``."""
    shape = (len(images), preprocess.channels, preprocess.input_size, preprocess.input_size)
    if where == "memory":
        pixels = np.zeros(shape, dtype=np.uint8)
        failures = _fill(images, preprocess, pixels, workers=workers, progress=progress)
        return DecodedImages(pixels, failures, "memory")
    if cache_dir is None:
        raise TlcliError("a disk image cache needs a cache folder")
    key = cache_key("images", preprocess.to_dict(), images.digest())
    target = Path(cache_dir) / f"images-{key}.npy"
    failures_file = target.with_suffix(".json")
    if target.exists() and failures_file.exists():
        failures = {int(index): reason for index, reason in json.loads(failures_file.read_text()).items()}
        return DecodedImages(np.load(target, mmap_mode="r"), failures, str(target), reused=True)
    partial = None
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        needed = int(np.prod(shape)) + (1 << 20)
        free = shutil.disk_usage(cache_dir).free
        if free < needed:  # a memory map filling a full disk dies of SIGBUS, not an error
            raise TlcliError(f"the image cache needs {needed / 2**30:.1f} GiB in {cache_dir}, which has {free / 2**30:.1f} GiB free")
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=cache_dir)
        os.close(handle)
        partial = Path(name)
        pixels = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
        failures = _fill(images, preprocess, pixels, workers=workers, progress=progress)
        pixels.flush()
        del pixels
        write_file_atomically(json.dumps(failures).encode(), failures_file)
        os.replace(partial, target)  # last: a file under the final name is always complete
        partial = None
    except OSError as exc:
        raise TlcliError(f"cannot write the image cache in {cache_dir}: {exc.strerror or exc}") from None
    finally:
        if partial is not None:
            partial.unlink(missing_ok=True)
    return DecodedImages(np.load(target, mmap_mode="r"), failures, str(target))


class CachedImages(Dataset):
    """Serves cached uint8 pixels in ``TransformedImages``' sample format; ``augment`` (if any)
    runs on the uint8 tensor exactly as in the uncached pipeline."""

    def __init__(self, decoded: DecodedImages, labels: list[int], augment=None):
        self.decoded = decoded
        self.labels = labels
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        label = self.labels[index]
        reason = self.decoded.failures.get(index)
        if reason is not None:
            return None, label, index, reason
        image = torch.from_numpy(np.array(self.decoded.pixels[index]))
        return (self.augment(image) if self.augment is not None else image), label, index, None
