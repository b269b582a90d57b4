"""Data sources: folder layouts, every bad input of the design, splits, built-in sets, transforms."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_class_folder, write_image
from tlcli.config import AugmentConfig, DataConfig
from tlcli.data import images as image_module
from tlcli.data.images import BadImageError, load_image
from tlcli.data.sources import load_data
from tlcli.data.transforms import Preprocess, build_transform
from tlcli.errors import DataError, TlcliError


def _load(root, **overrides):
    return load_data(DataConfig(source=str(root), **overrides))


def _all_names(data):
    return sorted(name for split in data.splits.values() for name in (split.key(i) for i in range(len(split))))


# --- structure -------------------------------------------------------------------------------

def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no data set"):
        _load(tmp_path / "nope")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is empty"):
        _load(tmp_path / "empty")


def test_images_without_class_folders(tmp_path):
    for i in range(3):
        write_image(tmp_path / "flat" / f"{i}.png", seed=i)
    with pytest.raises(DataError, match="no class folders"):
        _load(tmp_path / "flat")


def test_single_class(tmp_path):
    make_class_folder(tmp_path / "one", {"cats": 4})
    with pytest.raises(DataError, match="single class"):
        _load(tmp_path / "one")


def test_empty_class_and_class_of_only_unreadable_files(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 4, "b": 4})
    (root / "c").mkdir()
    with pytest.raises(DataError, match="'c'"):
        _load(root)
    (root / "c" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="no readable images"):
        _load(root, max_bad=10)


def test_hidden_files_and_folders_are_never_data(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 5, "b": 5})
    write_image(root / ".ipynb_checkpoints" / "x.png")
    write_image(root / ".git" / "objects" / "y.png")
    write_image(root / "a" / "._shadow.jpg", fmt="PNG")
    (root / "a" / ".DS_Store").write_bytes(b"\x00\x01")
    write_image(root / "b" / ".hidden" / "z.png")
    data = _load(root)
    assert data.classes == ["a", "b"]
    assert sum(len(s) for s in data.splits.values()) == 10
    assert not data.bad_files and not data.ignored_files


def test_non_image_files_are_ignored_and_listed(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 5, "b": 5})
    (root / "a" / "notes.txt").write_text("hello")
    (root / "labels.csv").write_text("x,y")
    data = _load(root)
    assert [f.path for f in data.ignored_files] == [str(root / "a" / "notes.txt")]
    assert sum(len(s) for s in data.splits.values()) == 10


def test_unreadable_images_are_skipped_and_max_bad_bounds_them(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 10, "b": 10})
    (root / "a" / "zero.png").write_bytes(b"")
    (root / "b" / "text.jpg").write_text("not really a jpeg")
    data = _load(root, max_bad=2)
    reasons = {f.path.rsplit("/", 1)[-1]: f.reason for f in data.bad_files}
    assert "empty" in reasons["zero.png"] and "not an image" in reasons["text.jpg"]
    assert sum(len(s) for s in data.splits.values()) == 20
    with pytest.raises(DataError, match="2 of 22 images cannot be read"):
        _load(root, max_bad=1)
    with pytest.raises(DataError, match="--max-bad"):
        _load(root, max_bad=0.05)  # 2/22 is more than 5 %
    assert len(_load(root, max_bad=0.1).bad_files) == 2


def test_numeric_class_names_sort_naturally(tmp_path):
    root = make_class_folder(tmp_path / "d", {"10": 3, "2": 3, "1": 3, "class11": 3, "class3": 3})
    assert _load(root).classes == ["1", "2", "10", "class3", "class11"]


def test_upper_case_extensions_are_images(tmp_path):
    root = tmp_path / "d"
    write_image(root / "a" / "X.JPG", fmt="JPEG")
    write_image(root / "a" / "Y.PNG", fmt="PNG")
    write_image(root / "b" / "Z.Jpeg", fmt="JPEG")
    write_image(root / "b" / "W.png")
    data = _load(root, val_split=0, test_split=0)
    assert len(data.splits["train"]) == 4


def test_presplit_layout_with_valid_folder(tmp_path):
    root = tmp_path / "beans"
    make_class_folder(root / "train", {"healthy": 4, "rust": 4})
    make_class_folder(root / "valid", {"healthy": 2, "rust": 2})
    make_class_folder(root / "test", {"healthy": 1, "rust": 1})
    data = _load(root)
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 8, "val": 4, "test": 2}
    assert data.split_info["method"] == "folders"
    make_class_folder(root / "valid", {"spot": 1})
    with pytest.raises(DataError, match="spot"):
        _load(root)


def test_a_name_resolves_under_the_data_folder(tmp_path, monkeypatch):
    make_class_folder(tmp_path / "data" / "pets", {"cat": 5, "dog": 5})
    monkeypatch.chdir(tmp_path)
    assert load_data(DataConfig(source="pets")).classes == ["cat", "dog"]


# --- splits ----------------------------------------------------------------------------------

def test_split_is_stratified_and_respects_fractions(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 50, "b": 30})
    data = _load(root)
    counts = data.class_counts()
    assert counts["test"] == {"a": 5, "b": 3} and counts["val"] == {"a": 10, "b": 6} and counts["train"] == {"a": 35, "b": 21}


def test_split_depends_only_on_names_fractions_and_seed(tmp_path, monkeypatch):
    root = make_class_folder(tmp_path / "data" / "d", {"a": 20, "b": 20})
    first = _load(root)
    monkeypatch.chdir(tmp_path)
    by_name = load_data(DataConfig(source="d"))
    relative = load_data(DataConfig(source="data/d"))
    for split in ("train", "val", "test"):
        keys = [first.splits[split].key(i) for i in range(len(first.splits[split]))]
        assert keys == [by_name.splits[split].key(i) for i in range(len(by_name.splits[split]))]
        assert keys == [relative.splits[split].key(i) for i in range(len(relative.splits[split]))]
    assert first.split_info["fingerprints"] == by_name.split_info["fingerprints"]
    other_seed = _load(root, seed=1)
    assert other_seed.split_info["fingerprints"]["test"] != first.split_info["fingerprints"]["test"]


def test_adding_images_to_one_class_moves_nothing_in_the_others(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 20, "b": 20})
    before = _load(root)
    for i in range(20, 30):
        write_image(root / "a" / f"{i}.png", seed=500 + i)
    after = _load(root)
    for split in ("train", "val", "test"):
        b_before = [before.splits[split].key(i) for i in range(len(before.splits[split])) if before.splits[split].labels[i] == 1]
        b_after = [after.splits[split].key(i) for i in range(len(after.splits[split])) if after.splits[split].labels[i] == 1]
        assert b_before == b_after
    assert after.split_info["fingerprints"]["train"] != before.split_info["fingerprints"]["train"]


def test_a_class_with_one_image_goes_to_train_with_a_note(tmp_path):
    root = make_class_folder(tmp_path / "d", {"many": 20, "lonely": 1})
    data = _load(root)
    assert data.class_counts()["train"]["lonely"] == 1
    assert any("'lonely' has 1 image" in note for note in data.notes)


@pytest.mark.parametrize("val,test", [(1.0, 0.0), (0.5, 0.5), (-0.1, 0.1)])
def test_bad_fractions(tmp_path, val, test):
    root = make_class_folder(tmp_path / "d", {"a": 4, "b": 4})
    with pytest.raises(DataError):
        _load(root, val_split=val, test_split=test)


# --- image modes and oddities ----------------------------------------------------------------

def test_every_mode_loads_as_rgb_or_gray_with_the_right_pixels(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    rgba.save(tmp_path / "rgba.png")
    loaded = load_image(tmp_path / "rgba.png")
    assert loaded.mode == "RGB" and loaded.getpixel((1, 1)) == (255, 255, 255) and loaded.getpixel((0, 0)) == (0, 0, 255)

    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    red = load_image(tmp_path / "cmyk.jpg").getpixel((2, 2))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60

    sixteen = Image.fromarray(np.array([[65535, 32768], [0, 257]], dtype=np.uint16))
    sixteen.save(tmp_path / "deep.png")
    gray = load_image(tmp_path / "deep.png")
    assert gray.mode == "L" and np.asarray(gray).tolist() == [[255, 128], [0, 1]]

    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.save(tmp_path / "pal.png")
    assert load_image(tmp_path / "pal.png").getpixel((0, 0)) == (10, 200, 30)
    palette.info["transparency"] = 1
    palette.save(tmp_path / "pal-t.png", transparency=1)
    assert load_image(tmp_path / "pal-t.png").getpixel((0, 0)) == (255, 255, 255)

    Image.new("L", (3, 3), 77).save(tmp_path / "gray.png")
    assert load_image(tmp_path / "gray.png").getpixel((1, 1)) == 77


def test_exif_rotation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), "blue")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").size == (20, 40)


def test_png_named_jpg_one_pixel_and_animated_gif(tmp_path):
    write_image(tmp_path / "really-png.jpg", fmt="PNG")
    assert load_image(tmp_path / "really-png.jpg").size == (16, 16)
    Image.new("RGB", (1, 1), "red").save(tmp_path / "dot.png")
    assert load_image(tmp_path / "dot.png").size == (1, 1)
    frames = [Image.new("RGB", (8, 8), color) for color in ("red", "green", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    first = load_image(tmp_path / "anim.gif").convert("RGB").getpixel((0, 0))
    assert first[0] > 200 and first[1] < 50


def test_truncated_jpeg_fails_on_decode_not_on_scan(tmp_path):
    path = write_image(tmp_path / "t.jpg", size=(128, 128), fmt="JPEG", quality=95)
    path.write_bytes(path.read_bytes()[:2000])
    image_module.probe_image(path)  # the header is intact
    with pytest.raises(BadImageError, match="decoded"):
        load_image(path)


def test_decompression_bomb_is_refused_without_decoding(tmp_path):
    side = int(image_module.MAX_PIXELS**0.5) + 100
    Image.new("1", (side, side)).save(tmp_path / "bomb.png", optimize=True)
    assert (tmp_path / "bomb.png").stat().st_size < 2_000_000
    with pytest.raises(BadImageError, match="decompression bomb"):
        image_module.probe_image(tmp_path / "bomb.png")
    with pytest.raises(BadImageError, match="decompression bomb"):
        load_image(tmp_path / "bomb.png")


# --- built-in and torchvision sets -----------------------------------------------------------

def test_builtin_digits():
    data = load_data(DataConfig("digits"))
    assert data.classes == [str(d) for d in range(10)]
    sizes = {k: len(v) for k, v in data.splits.items()}
    assert sum(sizes.values()) == 1797 and sizes["test"] == 179
    image = data.splits["train"].load(0)
    assert image.mode == "L" and image.size == (8, 8)
    pixels = np.asarray(image)
    assert pixels.max() > 200 and pixels.min() == 0


def _idx(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_mnist(folder, rng, *, gz=False, n_train=40, n_test=10):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for name, array in arrays.items():
        payload = _idx(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
        else:
            (folder / name).write_bytes(payload)
    return arrays


@pytest.mark.parametrize("layout,gz", [("mnist", False), ("mnist/MNIST/raw", True)])
def test_mnist_idx_files(tmp_path, monkeypatch, layout, gz):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    arrays = _write_mnist(tmp_path / layout, np.random.default_rng(0), gz=gz)
    data = load_data(DataConfig("mnist", val_split=0.2))
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 30, "val": 10, "test": 10}  # 4 per class, 1 to val
    test = data.splits["test"]
    assert np.array_equal(np.asarray(test.load(3)), arrays["t10k-images-idx3-ubyte"][3].astype(np.uint8))
    assert test.labels[3] == 3


def test_mnist_missing_and_truncated(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="--download") as caught:
        load_data(DataConfig("fashion_mnist"))
    assert "train-images-idx3-ubyte" in str(caught.value) and str(tmp_path / "fashion_mnist") in str(caught.value)
    _write_mnist(tmp_path / "mnist", np.random.default_rng(0))
    path = tmp_path / "mnist" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        load_data(DataConfig("mnist"))


def _write_cifar10(folder, rng):
    folder.mkdir(parents=True)
    batches = {}
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        batch = {b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8), b"labels": list(range(10))}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        batches[name] = batch
    names = [f"class{i}".encode() for i in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    return batches


def test_cifar10_python_batches(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    batches = _write_cifar10(tmp_path / "cifar10" / "cifar-10-batches-py", np.random.default_rng(1))
    data = load_data(DataConfig("cifar10", val_split=0.2))
    assert data.classes == [f"class{i}" for i in range(10)]
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 40, "val": 10, "test": 10}
    expected = batches["test_batch"][b"data"][4].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(np.asarray(data.splits["test"].load(4)), expected)


def test_cifar100(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    folder = tmp_path / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    for name, count in (("train", 20), ("test", 5)):
        batch = {"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8), "fine_labels": [i % 5 for i in range(count)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": ["apple", "bear", "cat", "dog", "eel"]}))
    data = load_data(DataConfig("cifar100", val_split=0.2))
    assert data.classes[:5] == ["apple", "bear", "cat", "dog", "eel"] and len(data.splits["test"]) == 5


def test_a_cifar_pickle_with_code_is_refused_and_not_run(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    _write_cifar10(folder, np.random.default_rng(3)).clear()
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": Exploit(), b"labels": []}))
    with pytest.raises(DataError, match="refusing"):
        load_data(DataConfig("cifar10"))
    assert not marker.exists()


# --- transforms ------------------------------------------------------------------------------

def test_eval_transform_shapes_channels_normalisation_and_determinism():
    gray = Image.new("L", (40, 30), 255)
    colour = Image.new("RGB", (40, 30), (255, 0, 0))
    to_rgb = build_transform(Preprocess(24, 24, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear", 3))
    out = to_rgb(gray)
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32 and torch.allclose(out, torch.ones_like(out))
    assert torch.equal(to_rgb(colour), to_rgb(colour))
    to_gray = build_transform(Preprocess(28, 28, (0.5,), (0.5,), "bilinear", 1))
    assert to_gray(colour).shape == (1, 28, 28)
    cropped = build_transform(Preprocess(16, 20))  # resize the short side to 20, centre-crop 16
    assert cropped(colour).shape == (3, 16, 16)


@pytest.mark.parametrize(
    "augment",
    [AugmentConfig(hflip=True), AugmentConfig(rotate=30), AugmentConfig(zoom=0.3), AugmentConfig(contrast=0.5),
     AugmentConfig(color_jitter=0.5), AugmentConfig(auto_augment="trivial"), AugmentConfig(auto_augment="rand")],
    ids=["hflip", "rotate", "zoom", "contrast", "color_jitter", "trivial", "rand"],
)
def test_each_augmentation_changes_training_images(augment):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    transform = build_transform(Preprocess(32, 32), augment)
    torch.manual_seed(0)
    outputs = [transform(image) for _ in range(12)]
    assert any(not torch.equal(outputs[0], other) for other in outputs[1:])


def test_invalid_augmentation_is_an_error():
    with pytest.raises(TlcliError, match="auto-augment"):
        build_transform(Preprocess(32, 32), AugmentConfig(auto_augment="magic"))
    with pytest.raises(TlcliError, match="--zoom"):
        build_transform(Preprocess(32, 32), AugmentConfig(zoom=1.5))


# --- tlcli data check ------------------------------------------------------------------------

def test_data_check_reports_counts_and_suspicious_files(run_cli, tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 10, "b": 10})
    write_image(root / "a" / "png-inside.jpg", fmt="PNG")
    Image.new("RGB", (1, 1)).save(root / "b" / "dot.png")
    Image.new("CMYK", (16, 16)).save(root / "b" / "print.jpg")
    jpeg = write_image(root / "a" / "cut.jpg", size=(128, 128), fmt="JPEG", quality=95)
    jpeg.write_bytes(jpeg.read_bytes()[:2000])
    result = run_cli("data", "check", str(root), "--json")
    assert result.code == 0, result.stderr
    report = result.json()
    assert report["trainable"] and report["classes"] == ["a", "b"]
    assert sum(sum(per_class.values()) for per_class in report["counts"].values()) == 23
    reasons = " | ".join(f"{f['path']}: {f['reason']}" for f in report["suspicious_files"])
    assert "png-inside.jpg: PNG content with a .jpg extension" in reasons
    assert "dot.png: tiny image (1x1)" in reasons and "print.jpg: CMYK image" in reasons
    assert [f["path"].rsplit("/", 1)[-1] for f in report["bad_files"]] == ["cut.jpg"]
    assert report["image_sizes"]["width"]["min"] == 1 and report["imbalance_ratio"] == pytest.approx(12 / 11, abs=1e-3)
    table = run_cli("data", "check", str(root))
    assert table.code == 0 and "suspicious: 3" in table.stdout and "unreadable (skipped): 1" in table.stdout


def test_data_check_on_digits_and_failures(run_cli, tmp_path):
    digits = run_cli("data", "check", "digits", "--json")
    assert digits.code == 0 and digits.json()["counts"]["test"]["0"] == 18
    missing = run_cli("data", "check", str(tmp_path / "nope"))
    assert missing.code == 1 and missing.stderr.startswith("Error: ") and "Traceback" not in missing.stderr
    root = make_class_folder(tmp_path / "d", {"a": 3, "b": 3})
    for i in range(3):
        (root / "a" / f"bad{i}.png").write_bytes(b"junk")
    broken = run_cli("data", "check", str(root))
    assert broken.code == 1 and "cannot train" in broken.stderr and "bad0.png" in broken.stdout
    assert run_cli("data", "check", str(root), "--bogus").code == 2
