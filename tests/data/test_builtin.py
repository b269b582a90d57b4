"""Built-in digits and the torchvision classics, read from files in their real on-disk formats."""

from __future__ import annotations

import gzip
import pickle
import struct
from collections import Counter

import numpy as np
import pytest

from tlcli.core.config import DataConfig
from tlcli.data.builtin import FASHION_CLASSES
from tlcli.data.sources import load_data
from tlcli.core.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


def _sizes(data):
    return {split: len(images) for split, images in data.splits.items()}


def _index(name: str) -> int:
    return int(name.rsplit("/", 1)[-1])


# --- digits ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sklearn_digits():
    from sklearn.datasets import load_digits

    return load_digits()


def test_digits_has_1797_images_in_10_classes_split_per_class(sklearn_digits):
    data = load_data(DataConfig("digits"))
    assert data.kind == "builtin" and data.classes == [str(d) for d in range(10)]
    assert sum(_sizes(data).values()) == 1797
    per_class = Counter(sklearn_digits.target.tolist())
    counts = data.class_counts()
    for label, total in per_class.items():
        name = str(label)
        assert counts["test"][name] == round(total * 0.1)
        assert counts["val"][name] == round(total * 0.2)
        assert counts["train"][name] == total - round(total * 0.1) - round(total * 0.2)
    assert data.split_info["method"] == "stratified" and set(data.split_info["fingerprints"]) == set(SPLITS)


def test_digits_images_are_the_real_8x8_digits(sklearn_digits):
    data = load_data(DataConfig("digits"))
    expected = np.rint(sklearn_digits.images * (255.0 / 16.0)).astype(np.uint8)
    for split in SPLITS:
        images = data.splits[split]
        for i in range(0, len(images), 37):
            image = images.load(i)
            assert image.mode == "L" and image.size == (8, 8)
            original = _index(images.name(i))
            assert np.array_equal(np.asarray(image), expected[original])
            assert images.labels[i] == sklearn_digits.target[original]
    pixels = np.stack([np.asarray(data.splits["train"].load(i)) for i in range(len(data.splits["train"]))])
    assert pixels.min() == 0 and pixels.max() == 255 and len(np.unique(pixels)) == 17  # 17 grey levels
    labels = np.array(data.splits["train"].labels)
    zero, one = pixels[labels == 0].mean(axis=0), pixels[labels == 1].mean(axis=0)
    assert np.abs(zero - one).mean() > 20  # the classes really look different


def test_digits_split_is_reproducible_and_seeded():
    first, again = load_data(DataConfig("digits")), load_data(DataConfig("digits"))
    other = load_data(DataConfig("digits", seed=7))
    names = lambda data, split: sorted(data.splits[split].name(i) for i in range(len(data.splits[split])))  # noqa: E731
    assert names(first, "test") == names(again, "test")
    assert first.split_info["fingerprints"] == again.split_info["fingerprints"]
    assert names(first, "test") != names(other, "test")
    assert _sizes(first) == _sizes(other)


def test_digits_fractions(tmp_path):
    assert _sizes(load_data(DataConfig("digits", val_split=0, test_split=0))) == {"train": 1797, "val": 0, "test": 0}
    # A fraction out of range is a bad option value (exit 2), whatever the data.
    with pytest.raises(ConfigError, match="--val-split"):
        load_data(DataConfig("digits", val_split=1.0))
    with pytest.raises(ConfigError, match="below 1"):
        load_data(DataConfig("digits", val_split=0.6, test_split=0.5))


# --- MNIST IDX files -------------------------------------------------------------------------


def _idx(array: np.ndarray) -> bytes:
    """The IDX format of yann.lecun.com: magic 0x00000803 (ubyte, 3 dims), big-endian sizes, data."""
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def _write_mnist(folder, *, gz=False, n_train=50, n_test=20, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": ((np.arange(n_test) * 3) % 10).astype(np.uint8),
    }
    for name, array in arrays.items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(_idx(array)))
        else:
            (folder / name).write_bytes(_idx(array))
    return arrays


def _check_mnist(data, arrays, name="mnist"):
    assert data.kind == "torchvision"
    # 5 train images per class: round(5 * 0.2) = 1 to val; the official test set is the test split.
    assert _sizes(data) == {"train": 40, "val": 10, "test": 20}
    assert data.class_counts()["val"] == {c: 1 for c in data.classes}
    test = data.splits["test"]
    for i in range(len(test)):
        assert test.name(i) == f"{name}/test/{i:05d}"
        image = test.load(i)
        assert image.mode == "L" and image.size == (28, 28)
        assert np.array_equal(np.asarray(image), arrays["t10k-images-idx3-ubyte"][i])
        assert test.labels[i] == arrays["t10k-labels-idx1-ubyte"][i]
    for split in ("train", "val"):
        images = data.splits[split]
        for i in range(len(images)):
            original = _index(images.name(i))
            assert np.array_equal(np.asarray(images.load(i)), arrays["train-images-idx3-ubyte"][original])
            assert images.labels[i] == arrays["train-labels-idx1-ubyte"][original]
    assert "official test" in data.split_info["method"]


@pytest.mark.parametrize("layout", ["mnist", "mnist/raw", "mnist/MNIST/raw"])
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_mnist_idx_files_load_with_exact_pixels(tmp_path, monkeypatch, layout, gz):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    arrays = _write_mnist(tmp_path / layout, gz=gz)
    data = load_data(DataConfig("mnist"))
    assert data.classes == [str(d) for d in range(10)]
    _check_mnist(data, arrays)


def test_mnist_under_data_of_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("TLCLI_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    arrays = _write_mnist(tmp_path / "data" / "mnist" / "MNIST" / "raw", gz=True)
    _check_mnist(load_data(DataConfig("mnist")), arrays)


def test_fashion_mnist_has_its_class_names(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    arrays = _write_mnist(tmp_path / "fashion_mnist" / "FashionMNIST" / "raw", gz=True, seed=5)
    data = load_data(DataConfig("fashion_mnist"))
    assert data.classes == FASHION_CLASSES and data.classes[9] == "Ankle boot"
    _check_mnist(data, arrays, name="fashion_mnist")


def test_mnist_val_fraction_and_seed(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    _write_mnist(tmp_path / "mnist", n_train=100)
    data = load_data(DataConfig("mnist", val_split=0.3, test_split=0.5))  # test_split does not apply
    assert _sizes(data) == {"train": 70, "val": 30, "test": 20}
    val = lambda d: sorted(d.splits["val"].name(i) for i in range(len(d.splits["val"])))  # noqa: E731
    assert val(data) == val(load_data(DataConfig("mnist", val_split=0.3)))
    assert val(data) != val(load_data(DataConfig("mnist", val_split=0.3, seed=3)))


def test_mnist_fingerprints_follow_the_labels_too(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    arrays = _write_mnist(tmp_path / "mnist")
    before = load_data(DataConfig("mnist")).split_info["fingerprints"]
    relabelled = (arrays["t10k-labels-idx1-ubyte"] + 1) % 10  # same images, other labels
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(_idx(relabelled))
    after = load_data(DataConfig("mnist")).split_info["fingerprints"]
    assert after["test"] != before["test"]
    assert after["train"] == before["train"] and after["val"] == before["val"]


def test_missing_mnist_names_the_files_the_folders_and_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError) as caught:
        load_data(DataConfig("mnist"))
    message = str(caught.value)
    assert "\n" not in message
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert name in message
    assert str(tmp_path / "mnist") in message and str(tmp_path / "mnist" / "MNIST" / "raw") in message
    assert "--download" in message


def test_a_partial_mnist_is_missing_too(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    _write_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*--download"):
        load_data(DataConfig("mnist"))


def _cut(raw: bytes, where: str) -> bytes:
    return {"in-magic": raw[:3], "in-header": raw[:6], "after-header": raw[:16], "in-data": raw[:-100], "empty": b""}[where]


@pytest.mark.parametrize("where", ["in-magic", "in-header", "after-header", "in-data", "empty"])
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_truncated_idx_file_is_a_data_error(tmp_path, monkeypatch, where, gz):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    arrays = _write_mnist(tmp_path / "mnist", gz=gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    cut = _cut(_idx(arrays["train-images-idx3-ubyte"]), where)
    (tmp_path / "mnist" / name).write_bytes(gzip.compress(cut) if gz else cut)
    with pytest.raises(DataError, match="train-images-idx3-ubyte") as caught:
        load_data(DataConfig("mnist"))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("damage", ["cut-stream", "flipped-byte"])
def test_damaged_gzip_is_a_data_error(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    _write_mnist(tmp_path / "mnist", gz=True)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    # Few grey levels, as real digits have: deflate then codes them with Huffman tables,
    # and damage to those is a decompression error rather than a checksum mismatch.
    images = np.random.default_rng(4).integers(0, 4, (50, 28, 28), dtype=np.uint8) * 60
    raw = bytearray(gzip.compress(_idx(images)))
    if damage == "cut-stream":
        raw = raw[: len(raw) // 2]
    else:
        for offset in range(20, 28):  # just past the 10-byte gzip header
            raw[offset] ^= 0xA5
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_data(DataConfig("mnist"))


def test_idx_with_a_wrong_magic_number_is_a_data_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    _write_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(b"\x1f\x8b\x08\x00" + bytes(20))  # gzip bytes, plain name
    with pytest.raises(DataError, match="magic"):
        load_data(DataConfig("mnist"))


def test_mnist_images_and_labels_of_different_lengths(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    _write_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "train-labels-idx1-ubyte").write_bytes(_idx(np.zeros(49, dtype=np.uint8)))
    with pytest.raises(DataError, match="do not match"):
        load_data(DataConfig("mnist"))


def test_mnist_labels_beyond_the_classes(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    _write_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(_idx(np.full(20, 12, dtype=np.uint8)))
    with pytest.raises(DataError, match="labels go up to 12"):
        load_data(DataConfig("mnist"))


# --- CIFAR python batches --------------------------------------------------------------------


def _write_cifar10(folder, *, per_batch=10, protocol=2, seed=1):
    """The "python version" archive: pickled dicts with bytes keys, as Python 2 wrote them."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    batches = {}
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.permutation(np.arange(per_batch) % 10)],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        batches[name] = batch
    meta = {b"label_names": [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")],
            b"num_cases_per_batch": per_batch, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return batches


def _cifar_image(row: np.ndarray) -> np.ndarray:
    """1024 red, then 1024 green, then 1024 blue values, each plane row-major 32x32."""
    return np.stack([row[:1024].reshape(32, 32), row[1024:2048].reshape(32, 32), row[2048:].reshape(32, 32)], axis=-1)


@pytest.mark.parametrize("layout", ["cifar10/cifar-10-batches-py", "cifar10"])
def test_cifar10_batches_load_with_exact_pixels(tmp_path, monkeypatch, layout):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    batches = _write_cifar10(tmp_path / layout)
    data = load_data(DataConfig("cifar10"))
    assert data.classes[:3] == ["airplane", "automobile", "bird"] and len(data.classes) == 10
    # 50 training images, 5 per class: one of each to val; the official test batch is the test split.
    assert _sizes(data) == {"train": 40, "val": 10, "test": 10}
    test = data.splits["test"]
    for i in range(len(test)):
        image = test.load(i)
        assert image.mode == "RGB" and image.size == (32, 32)
        assert np.array_equal(np.asarray(image), _cifar_image(batches["test_batch"][b"data"][i]))
        assert test.labels[i] == batches["test_batch"][b"labels"][i]
    train_rows = np.concatenate([batches[f"data_batch_{k}"][b"data"] for k in range(1, 6)])
    train_labels = [label for k in range(1, 6) for label in batches[f"data_batch_{k}"][b"labels"]]
    for split in ("train", "val"):
        images = data.splits[split]
        for i in range(len(images)):
            original = _index(images.name(i))
            assert np.array_equal(np.asarray(images.load(i)), _cifar_image(train_rows[original]))
            assert images.labels[i] == train_labels[original]


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_cifar10_batches_of_any_pickle_protocol(tmp_path, monkeypatch, protocol):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    batches = _write_cifar10(tmp_path / "cifar10" / "cifar-10-batches-py", protocol=protocol)
    data = load_data(DataConfig("cifar10"))
    assert np.array_equal(np.asarray(data.splits["test"].load(3)), _cifar_image(batches["test_batch"][b"data"][3]))


def test_cifar100_fine_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    folder = tmp_path / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    fine_names = [f"fine{i:02d}" for i in range(100)]
    written = {}
    for name, count in (("train", 300), ("test", 40)):
        batch = {
            b"filenames": [f"{i}.png".encode() for i in range(count)],
            # every class in train, as in the real set: a class without training images is refused
            b"fine_labels": [int(v) for v in (rng.permutation(count) % 100 if name == "train" else rng.integers(0, 100, count))],
            b"coarse_labels": [int(v) for v in rng.integers(0, 20, count)],
            b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        written[name] = batch
    meta = {b"fine_label_names": [n.encode() for n in fine_names], b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    data = load_data(DataConfig("cifar100"))
    assert data.classes == fine_names
    assert _sizes(data)["test"] == 40 and _sizes(data)["train"] + _sizes(data)["val"] == 300
    test = data.splits["test"]
    for i in range(0, 40, 7):
        assert np.array_equal(np.asarray(test.load(i)), _cifar_image(written["test"][b"data"][i]))
        assert test.labels[i] == written["test"][b"fine_labels"][i]
    train = data.splits["train"]
    for i in range(0, len(train), 23):
        original = _index(train.name(i))
        assert train.labels[i] == written["train"][b"fine_labels"][original]


def test_missing_cifar_names_the_files_the_folder_and_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError) as caught:
        load_data(DataConfig("cifar10"))
    message = str(caught.value)
    for name in ("data_batch_1", "data_batch_5", "test_batch", "batches.meta"):
        assert name in message
    assert str(tmp_path / "cifar10" / "cifar-10-batches-py") in message and "--download" in message
    with pytest.raises(DataError, match="cifar-100-python.*--download"):
        load_data(DataConfig("cifar100"))


def test_truncated_cifar_batch_is_a_data_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    _write_cifar10(folder)
    raw = (folder / "data_batch_3").read_bytes()
    for cut in (0, 1, 40, len(raw) // 2, len(raw) - 1):
        (folder / "data_batch_3").write_bytes(raw[:cut])
        with pytest.raises(DataError, match="data_batch_3"):
            load_data(DataConfig("cifar10"))


def test_cifar_batch_without_labels_is_a_data_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    _write_cifar10(folder)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), dtype=np.uint8)}, protocol=2))
    with pytest.raises(DataError, match="malformed"):
        load_data(DataConfig("cifar10"))


def test_cifar_labels_beyond_the_class_names(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    _write_cifar10(folder)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a", b"b"]}, protocol=2))
    with pytest.raises(DataError, match="class names"):
        load_data(DataConfig("cifar10"))


class _RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


class _Evaluates:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("payload", [_RunsCommand, _Evaluates], ids=["os.system", "eval"])
@pytest.mark.parametrize("victim", ["batches.meta", "data_batch_2", "test_batch"])
def test_a_cifar_pickle_referencing_code_is_refused_and_not_run(tmp_path, monkeypatch, payload, victim):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    _write_cifar10(folder)
    marker = tmp_path / "pwned"
    (folder / victim).write_bytes(pickle.dumps({b"data": payload(marker), b"labels": [0], b"label_names": [b"x"]}, protocol=2))
    with pytest.raises(DataError, match="refusing") as caught:
        load_data(DataConfig("cifar10"))
    assert victim in str(caught.value)
    assert not marker.exists()
