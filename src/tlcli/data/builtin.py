"""Data sets that need no folder of images: scikit-learn's digits and torchvision's classics.

MNIST, Fashion-MNIST and CIFAR are read from their standard distribution files (IDX and
CIFAR "python version" batches) with a reader of our own, so that a small file written in
the same format by a test reads the same way as the real download.
"""

from __future__ import annotations

import gzip
import pickle
import socket
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlcli.core.config import DataConfig, check_fractions
from tlcli.data.dataset import ImageData, record_fingerprints, split_records
from tlcli.data.imagesets import ArrayImages
from tlcli.core.errors import DataError

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@dataclass(frozen=True)
class TorchvisionSet:
    name: str
    torchvision_class: str  # the torchvision.datasets class that downloads it
    folders: tuple[str, ...]  # where the files may lie, relative to data/<name>/
    files: tuple[str, ...]  # what must be there
    description: str


TORCHVISION_SETS = {
    "mnist": TorchvisionSet(
        "mnist", "MNIST", ("", "raw", "MNIST/raw"),
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        "handwritten digits, 28x28 grayscale, 60,000 train + 10,000 test",
    ),
    "fashion_mnist": TorchvisionSet(
        "fashion_mnist", "FashionMNIST", ("", "raw", "FashionMNIST/raw"),
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        "clothing, 28x28 grayscale, 60,000 train + 10,000 test",
    ),
    "cifar10": TorchvisionSet(
        "cifar10", "CIFAR10", ("cifar-10-batches-py", ""),
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"),
        "10 classes of objects, 32x32 colour, 50,000 train + 10,000 test",
    ),
    "cifar100": TorchvisionSet(
        "cifar100", "CIFAR100", ("cifar-100-python", ""),
        ("train", "test", "meta"),
        "100 classes of objects, 32x32 colour, 50,000 train + 10,000 test",
    ),
}
BUILTIN_NAMES = ("digits", *TORCHVISION_SETS)


def load_digits_data(config: DataConfig) -> ImageData:
    """scikit-learn's 1,797 real handwritten digits (8x8, 17 grey levels), shipped with it."""
    from sklearn.datasets import load_digits

    check_fractions(config.val_split, config.test_split)
    digits = load_digits()
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = ArrayImages(pixels, digits.target.tolist(), [f"digits/{i:04d}" for i in range(len(pixels))])
    classes = [str(c) for c in digits.target_names]
    splits, info, notes = split_records(
        images, classes, val_fraction=config.val_split, test_fraction=config.test_split, seed=config.seed
    )
    record_fingerprints(info, splits, classes)
    return ImageData("digits", "builtin", classes, splits, info, notes=notes)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: it ends inside its {header}-byte header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(f"{path} is truncated or padded: header says {expected:,} bytes of data, found {len(raw) - header:,}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


class _ArraysOnly(pickle.Unpickler):
    """CIFAR batches are pickles; allow the numpy array machinery and nothing else.

    ``_codecs.encode`` is how Python 3 pickles bytes at protocol 2; it only encodes text.
    ``_frombuffer`` is how numpy pickles arrays at protocol 5 (Python 3.14's default).
    """

    ALLOWED = {
        ("_codecs", "encode"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            batch = _ArraysOnly(handle, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise DataError(f"cannot read CIFAR batch {path}: {exc}") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path} is not a CIFAR batch (expected a dict)")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}


def _find_files(spec: TorchvisionSet, base: Path) -> Path | None:
    for folder in spec.folders:
        candidate = base / folder
        if all((candidate / name).exists() or (candidate / f"{name}.gz").exists() for name in spec.files):
            return candidate
    return None


def _download(spec: TorchvisionSet, base: Path) -> None:
    from tlcli.core.vision import torchvision

    dataset_class = getattr(torchvision.datasets, spec.torchvision_class)
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(60)  # an unattended job must not hang forever on a dead network
    try:
        for train in (True, False):
            dataset_class(root=str(base), train=train, download=True)
    except Exception as exc:  # torchvision raises a mix of URLError, RuntimeError and OSError
        raise DataError(f"could not download {spec.name} into {base}: {exc}") from None
    finally:
        socket.setdefaulttimeout(previous_timeout)


def _idx_file(folder: Path, name: str) -> Path:
    plain = folder / name
    return plain if plain.exists() else folder / f"{name}.gz"


def _mnist_like(spec: TorchvisionSet, folder: Path) -> tuple[np.ndarray, list[int], np.ndarray, list[int], list[str]]:
    arrays = {name: _read_idx(_idx_file(folder, name)) for name in spec.files}
    train_x, train_y = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    test_x, test_y = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]
    for images, labels, part in ((train_x, train_y, "train"), (test_x, test_y, "t10k")):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{folder}: {part} images {images.shape} and labels {labels.shape} do not match")
    classes = FASHION_CLASSES if spec.name == "fashion_mnist" else [str(d) for d in range(10)]
    return train_x, train_y.tolist(), test_x, test_y.tolist(), classes


def _cifar(spec: TorchvisionSet, folder: Path) -> tuple[np.ndarray, list[int], np.ndarray, list[int], list[str]]:
    label_key = "labels" if spec.name == "cifar10" else "fine_labels"
    meta = _read_cifar(folder / spec.files[-1])
    names = meta.get("label_names" if spec.name == "cifar10" else "fine_label_names", [])
    classes = [name.decode() if isinstance(name, bytes) else str(name) for name in names]

    def read(names: tuple[str, ...]) -> tuple[np.ndarray, list[int]]:
        batches = [_read_cifar(folder / name) for name in names]
        try:
            pixels = np.concatenate([np.asarray(b["data"], dtype=np.uint8).reshape(-1, 3, 32, 32) for b in batches])
            labels = [int(label) for b in batches for label in b[label_key]]
        except (KeyError, ValueError) as exc:
            raise DataError(f"{folder}: malformed CIFAR batch ({exc})") from None
        if len(pixels) != len(labels):
            raise DataError(f"{folder}: {len(pixels)} images but {len(labels)} labels")
        return pixels.transpose(0, 2, 3, 1).copy(), labels

    train_names = spec.files[:5] if spec.name == "cifar10" else ("train",)
    train_x, train_y = read(train_names)
    test_x, test_y = read(("test_batch",) if spec.name == "cifar10" else ("test",))
    return train_x, train_y, test_x, test_y, classes


def load_torchvision_data(name: str, data_root: Path, config: DataConfig) -> ImageData:
    spec = TORCHVISION_SETS[name]
    base = data_root / name
    folder = _find_files(spec, base)
    if folder is None and config.download:
        _download(spec, base)
        folder = _find_files(spec, base)
    if folder is None:
        where = " or ".join(str(base / f) if f else str(base) for f in spec.folders)
        raise DataError(
            f"{name} files not found: place {', '.join(spec.files)} (optionally .gz) in {where}, "
            f"or add --download to fetch them"
        )
    check_fractions(config.val_split, 0.0)
    reader = _cifar if name.startswith("cifar") else _mnist_like
    train_x, train_y, test_x, test_y, classes = reader(spec, folder)
    labels_seen = max(train_y + test_y) + 1
    if len(classes) < labels_seen:
        raise DataError(f"{folder}: labels go up to {labels_seen - 1} but only {len(classes)} class names are known")
    pool = ArrayImages(train_x, train_y, [f"{name}/train/{i:05d}" for i in range(len(train_x))])
    splits, info, notes = split_records(pool, classes, val_fraction=config.val_split, test_fraction=0.0, seed=config.seed)
    splits["test"] = ArrayImages(test_x, test_y, [f"{name}/test/{i:05d}" for i in range(len(test_x))])
    info["method"] = "official test split; val from train, stratified"
    record_fingerprints(info, splits, classes)
    return ImageData(name, "torchvision", classes, splits, info, notes=notes, root=str(folder))
