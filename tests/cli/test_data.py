"""``tlcli data check`` end to end, through the CLI entry point."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import make_class_folder, write_image

pytestmark = pytest.mark.usefixtures("isolated")


def _strict_json(text: str):
    """Parse as any JSON tool would: NaN and Infinity are not JSON."""

    def refuse(constant):
        raise ValueError(f"{constant} is not valid JSON")

    return json.loads(text, parse_constant=refuse)


def _names(files):
    return sorted(Path(f["path"]).name for f in files)


def _reasons(files):
    return {Path(f["path"]).name: f["reason"] for f in files}


def _assert_one_error_line(result, code: int = 1):
    assert result.code == code
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("Error: ")
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout


def _odd_folder(tmp_path):
    """A trainable folder with one of every odd-but-usable file, and files that are not images."""
    root = make_class_folder(tmp_path / "d", {"cat": 10, "dog": 13})
    write_image(root / "cat" / "png-inside.jpg", fmt="PNG", seed=99)  # not a copy of cat/0.png
    Image.new("RGB", (1, 1), (9, 9, 9)).save(root / "dog" / "dot.png")
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "green")]
    frames[0].save(root / "dog" / "anim.gif", save_all=True, append_images=frames[1:])
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(root / "cat" / "print.jpg")
    Image.fromarray(np.full((16, 16), 40000, dtype=np.uint16)).save(root / "cat" / "deep.png")
    write_image(root / "cat" / "UPPER.JPG", fmt="JPEG")
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    write_image(root / ".ipynb_checkpoints" / "x.png")
    return root


def test_good_folder_json(run_cli, tmp_path):
    root = _odd_folder(tmp_path)
    result = run_cli("data", "check", str(root), "--json")
    assert result.code == 0, result.stderr
    report = _strict_json(result.stdout)
    assert report["trainable"] is True and report["problems"] == []
    assert report["kind"] == "folder" and report["classes"] == ["cat", "dog"]
    totals = {name: sum(report["counts"][split][name] for split in ("train", "val", "test")) for name in report["classes"]}
    assert totals == {"cat": 14, "dog": 15}
    assert report["counts"]["test"] == {"cat": 1, "dog": 2} and report["counts"]["val"] == {"cat": 3, "dog": 3}
    assert report["bad_files"] == []
    assert _names(report["ignored_files"]) == ["notes.txt"]
    suspicious: dict[str, list[str]] = {}
    for item in report["suspicious_files"]:
        suspicious.setdefault(Path(item["path"]).name, []).append(item["reason"])
    assert suspicious["png-inside.jpg"] == ["PNG content with a .jpg extension"]
    assert suspicious["dot.png"] == ["tiny image (1x1)"]
    assert any("animated (2 frames)" in reason for reason in suspicious["anim.gif"])
    assert suspicious["print.jpg"] == ["CMYK image, converted to RGB"]
    assert suspicious["deep.png"] == ["I;16 image, converted to L"]
    assert set(suspicious) == {"png-inside.jpg", "dot.png", "anim.gif", "print.jpg", "deep.png"}
    assert report["image_sizes"]["width"] == {"min": 1, "median": 16, "max": 16}
    assert report["image_modes"]["CMYK"] == 1 and report["image_modes"]["RGB"] >= 24
    assert report["imbalance_ratio"] == pytest.approx(15 / 14, abs=1e-3)
    assert set(report["split"]["fingerprints"]) == {"train", "val", "test"}
    assert result.stdout.count("\n") == len(result.stdout.splitlines())  # nothing but the JSON on stdout


def test_good_folder_table(run_cli, tmp_path):
    root = _odd_folder(tmp_path)
    result = run_cli("data", "check", str(root))
    assert result.code == 0, result.stderr
    assert "cat" in result.stdout and "dog" in result.stdout
    assert "suspicious: 6" in result.stdout  # the GIF is both animated and palette and "not images (ignored): 1" in result.stdout
    assert "unreadable" not in result.stdout
    assert "png-inside.jpg: PNG content with a .jpg extension" in result.stdout
    assert "Error" not in result.stderr


def test_digits_json(run_cli):
    from sklearn.datasets import load_digits

    result = run_cli("data", "check", "digits", "--json")
    assert result.code == 0, result.stderr
    report = _strict_json(result.stdout)
    assert report["kind"] == "builtin" and report["classes"] == [str(d) for d in range(10)]
    per_class = Counter(load_digits().target.tolist())
    for label, total in per_class.items():
        assert report["counts"]["test"][str(label)] == round(total * 0.1)
        assert report["counts"]["val"][str(label)] == round(total * 0.2)
        assert sum(report["counts"][split][str(label)] for split in report["counts"]) == total
    assert sum(sum(c.values()) for c in report["counts"].values()) == 1797
    assert report["image_modes"] == {"L": 1797}
    assert report["image_sizes"]["width"] == {"min": 8, "median": 8, "max": 8}
    assert report["bad_files"] == [] and report["trainable"] is True


def test_digits_with_other_fractions(run_cli):
    report = _strict_json(run_cli("data", "check", "digits", "--json", "--val-split", "0.5", "--test-split", "0").stdout)
    assert sum(report["counts"]["test"].values()) == 0
    assert sum(report["counts"]["val"].values()) == pytest.approx(1797 / 2, abs=10)


def test_missing_folder(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli("data", "check", str(tmp_path / "nope"))
    _assert_one_error_line(result)
    assert "nope" in result.stderr and result.stdout == ""
    as_json = run_cli("data", "check", "nope", "--json")
    _assert_one_error_line(as_json)
    assert as_json.stdout == ""


@pytest.mark.parametrize(
    "build,fragment",
    [
        (lambda root: root.mkdir(), "is empty"),
        (lambda root: make_class_folder(root, {"only": 3}), "single class"),
        (lambda root: [write_image(root / f"{i}.png") for i in range(2)], "no class folders"),
        (lambda root: (make_class_folder(root, {"a": 2, "b": 2}), (root / "c").mkdir()), "'c'"),
    ],
    ids=["empty", "single-class", "no-class-folders", "empty-class"],
)
def test_structural_problems_are_one_error_line(run_cli, tmp_path, build, fragment):
    root = tmp_path / "d"
    build(root)
    result = run_cli("data", "check", str(root))
    _assert_one_error_line(result)
    assert fragment in result.stderr


def test_too_many_unreadable_files(run_cli, tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 4, "b": 4})
    (root / "a" / "zero.png").write_bytes(b"")
    (root / "a" / "text.jpg").write_text("no")
    cut = write_image(root / "b" / "cut.jpg", size=(128, 128), fmt="JPEG", quality=95)
    cut.write_bytes(cut.read_bytes()[:2500])  # only a full decode finds this one
    table = run_cli("data", "check", str(root))
    _assert_one_error_line(table)
    assert "cannot train" in table.stderr and "3 of 11" in table.stderr
    assert "unreadable (skipped): 3" in table.stdout
    for name in ("zero.png", "text.jpg", "cut.jpg"):
        assert name in table.stdout
    as_json = run_cli("data", "check", str(root), "--json")
    assert as_json.code == 1
    report = _strict_json(as_json.stdout)
    assert report["trainable"] is False and _names(report["bad_files"]) == ["cut.jpg", "text.jpg", "zero.png"]
    reasons = _reasons(report["bad_files"])
    assert "0 bytes" in reasons["zero.png"] and "truncated" in reasons["cut.jpg"]
    # The same files, tolerated as a count or as a fraction.
    assert run_cli("data", "check", str(root), "--max-bad", "3").code == 0
    assert run_cli("data", "check", str(root), "--max-bad", "2").code == 1
    assert run_cli("data", "check", str(root), "--max-bad", "0.3").code == 0
    assert run_cli("data", "check", str(root), "--max-bad", "0.2").code == 1


def test_a_class_whose_every_image_is_truncated(run_cli, tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 4, "b": 4})
    for i in range(2):
        cut = write_image(root / "c" / f"cut{i}.jpg", size=(64, 64), fmt="JPEG", quality=95, seed=i)
        cut.write_bytes(cut.read_bytes()[:1500])
    result = run_cli("data", "check", str(root), "--json", "--max-bad", "5")
    assert result.code == 1
    report = _strict_json(result.stdout)  # an infinite imbalance must still be valid JSON
    assert "class 'c' has no readable training images" in report["problems"]
    assert report["imbalance_ratio"] is None
    assert _names(report["bad_files"]) == ["cut0.jpg", "cut1.jpg"]
    assert "class 'c'" in result.stderr
    table = run_cli("data", "check", str(root), "--max-bad", "5")
    assert table.code == 1 and "Traceback" not in table.stderr


def test_decompression_bomb_is_listed_as_unreadable(run_cli, tmp_path):
    import zlib

    from tlcli.data.images import MAX_PIXELS

    root = make_class_folder(tmp_path / "d", {"a": 10, "b": 10})
    side = int(MAX_PIXELS**0.5) + 50
    compressor = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)
    body = b"".join(compressor.compress(row * min(1024, side - y)) for y in range(0, side, 1024)) + compressor.flush()

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    (root / "b" / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    report = _strict_json(run_cli("data", "check", str(root), "--json", "--max-bad", "1").stdout)
    assert "decompression bomb" in _reasons(report["bad_files"])["bomb.png"]
    assert report["trainable"] is True


def test_presplit_folder(run_cli, tmp_path):
    root = tmp_path / "beans"
    make_class_folder(root / "train", {"healthy": 3, "rust": 3})
    make_class_folder(root / "validation", {"healthy": 1, "rust": 1}, seed=10000)
    report = _strict_json(run_cli("data", "check", str(root), "--json").stdout)
    assert report["split"]["method"] == "folders"
    assert report["counts"]["val"] == {"healthy": 1, "rust": 1} and report["counts"]["test"] == {"healthy": 0, "rust": 0}
    assert any("test" in note for note in report["notes"])


# The loop of the issue: two links to their own folder, 2**40 paths for os.walk to follow.
_CHECK_UNDER_1_GIB = """
import resource, runpy, sys
resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))
sys.argv = ["tlcli", "data", "check", sys.argv[1], "--json"]
runpy.run_module("tlcli", run_name="__main__")
"""


def test_a_link_loop_ends_quickly_in_bounded_memory_and_counts_each_image_once(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 2, "b": 2})
    (root / "a" / "l1").symlink_to(".")
    (root / "a" / "l2").symlink_to(".")
    done = subprocess.run([sys.executable, "-c", _CHECK_UNDER_1_GIB, str(root)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    report = _strict_json(done.stdout)
    assert {name: sum(report["counts"][split][name] for split in report["counts"]) for name in report["classes"]} == {"a": 2, "b": 2}
    assert _names(report["skipped_links"]) == ["l1", "l2"]
    assert all("inside the data folder" in reason for reason in _reasons(report["skipped_links"]).values())


def test_a_dangling_link_gets_one_verdict_from_data_check_and_from_train(run_cli, tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 4, "b": 4})
    (root / "a" / "gone.png").symlink_to(tmp_path / "unmounted" / "gone.png")
    reason = f"link to {tmp_path / 'unmounted' / 'gone.png'}, which leads nowhere (No such file or directory)"
    checked = run_cli("data", "check", str(root), "--json")
    assert checked.code == 0, checked.stderr
    report = _strict_json(checked.stdout)
    assert report["trainable"] is True and report["bad_files"] == []
    assert report["skipped_links"] == [{"path": str(root / "a" / "gone.png"), "reason": reason}]
    table = run_cli("data", "check", str(root))
    assert table.code == 0 and f"links not followed: 1\n  {root / 'a' / 'gone.png'}: {reason}" in table.stdout
    trained = run_cli("train", "--data", str(root), "--arch", "mlp", "--epochs", "1", "--out", "checkpoints/r")
    assert trained.code == 0, trained.stderr
    assert f"Warning: skipped {root / 'a' / 'gone.png'}: {reason}" in trained.stderr


def test_mnist_files(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    folder = tmp_path / "mnist" / "MNIST" / "raw"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (30, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(30) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(10, dtype=np.uint8),
    }
    for name, array in arrays.items():
        idx = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
        (folder / f"{name}.gz").write_bytes(gzip.compress(idx))
    result = run_cli("data", "check", "mnist", "--json")
    assert result.code == 0, result.stderr
    report = _strict_json(result.stdout)
    assert report["kind"] == "torchvision" and len(report["classes"]) == 10
    assert {split: sum(c.values()) for split, c in report["counts"].items()} == {"train": 20, "val": 10, "test": 10}
    assert report["image_sizes"]["height"]["max"] == 28 and report["image_modes"] == {"L": 40}


def test_missing_torchvision_set_mentions_download(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path))
    result = run_cli("data", "check", "cifar10")
    _assert_one_error_line(result)
    assert "--download" in result.stderr and "data_batch_1" in result.stderr


def test_bad_split_fractions(run_cli, tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 4, "b": 4})
    result = run_cli("data", "check", str(root), "--val-split", "0.6", "--test-split", "0.5")
    _assert_one_error_line(result, code=2)  # a bad option value
    assert "--val-split" in result.stderr


@pytest.mark.parametrize(
    "args",
    [("data", "check", "digits", "--bogus"), ("data", "check"), ("data", "check", "digits", "--max-bad", "-1"),
     ("data", "check", "digits", "--seed", "many")],
    ids=["unknown-option", "no-path", "negative-max-bad", "non-numeric-seed"],
)
def test_usage_errors_exit_2(run_cli, args):
    result = run_cli(*args)
    assert result.code == 2
    assert "Traceback" not in result.stderr
