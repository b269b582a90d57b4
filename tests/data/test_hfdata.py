"""``--data hf:...``: Hugging Face datasets read through the ``datasets`` library, without a network.

The data sets are built with ``datasets`` itself and written as parquet files the way dataset
repositories lay them out (``data/<split>-00000-of-00001.parquet``), so that ``hf:FOLDER`` goes
through the same ``load_dataset`` call a Hub name does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tlcli

datasets = pytest.importorskip("datasets")
pytestmark = pytest.mark.usefixtures("isolated")

CLASSES = ["angular_leaf_spot", "bean_rust", "healthy"]


def _pixels(count: int, seed: int, label_of) -> list:
    """Images whose brightness tells the class, so one epoch of an MLP learns something."""
    rng = np.random.default_rng(seed)
    return [np.clip(rng.normal(40 + 80 * label_of(i), 20, (12, 12, 3)), 0, 255).astype(np.uint8) for i in range(count)]


def _dataset(count: int, seed: int):
    """An Image column and a ClassLabel, as the beans dataset has them."""
    from PIL import Image

    features = datasets.Features({"image": datasets.Image(), "labels": datasets.ClassLabel(names=CLASSES)})
    images = [Image.fromarray(p) for p in _pixels(count, seed, lambda i: i % 3)]
    return datasets.Dataset.from_dict({"image": images, "labels": [i % 3 for i in range(count)]}, features=features)


def _hub_repo(root: Path, *, train: int = 36, test: int = 9, seed: int = 0) -> Path:
    """A dataset repository's layout: data/train-*.parquet and data/test-*.parquet, no validation split."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    _dataset(train, seed).to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    _dataset(test, seed + 1).to_parquet(str(root / "data" / "test-00000-of-00001.parquet"))
    return root


def test_a_hub_layout_checks_trains_and_evaluates_without_flags(run_cli, tmp_path):
    repo = _hub_repo(tmp_path / "beans")
    checked = run_cli("data", "check", f"hf:{repo}", "--json")
    assert checked.code == 0, checked.stderr
    report = checked.json()
    assert report["kind"] == "hf" and report["classes"] == CLASSES  # the ClassLabel's names
    assert report["split"]["image_column"] == "image" and report["split"]["label_column"] == "labels"
    # test as the dataset gives it; val carved out of train (20 %, stratified: 2 of 12 per class)
    assert report["counts"]["test"] == dict.fromkeys(CLASSES, 3)
    assert report["counts"]["val"] == dict.fromkeys(CLASSES, 2) and report["counts"]["train"] == dict.fromkeys(CLASSES, 10)
    assert report["image_sizes"]["width"] == {"min": 12, "median": 12, "max": 12}

    for out in ("run", "again"):
        trained = run_cli("train", "--data", f"hf:{repo}", "--arch", "mlp", "--epochs", "1", "--batch-size", "8",
                          "--cache-images", "disk", "--cache-dir", "cache", "--out", out, "--json")
        assert trained.code == 0, trained.stderr
    # The decoded-image cache is keyed by the dataset's contents: a second load finds it.
    assert "images cached in cache (reused)" in Path("again/log.txt").read_text()
    saved = torch.load("run/best.pt", map_location="cpu", weights_only=False)
    assert saved["config"]["data"]["source"] == f"hf:{repo}" and saved["data"]["kind"] == "hf"

    evaluated = run_cli("evaluate", "run", "--json")  # the checkpoint names the source and its split
    assert evaluated.code == 0, evaluated.stderr
    assert evaluated.json()["images"] == 9 and "changed" not in evaluated.stderr

    # Same rows and labels, other pixels: a new revision of the dataset is noticed.
    _dataset(9, seed=7).to_parquet(str(repo / "data" / "test-00000-of-00001.parquet"))
    again = run_cli("evaluate", "run", "--json")
    assert again.code == 0 and "the test files differ from those at training time" in again.stderr


def test_columns_are_found_by_feature_or_named(run_cli, tmp_path):
    features = datasets.Features({"photo": datasets.Image(), "kind": datasets.Value("string"), "weight": datasets.Value("int64")})
    table = datasets.Dataset.from_dict(
        {"photo": list(_dataset(30, 0)["image"]), "kind": [["leaf", "pod", "stem10", "stem2"][i % 4] for i in range(30)], "weight": list(range(30))},
        features=features,
    )
    table.save_to_disk(str(tmp_path / "saved"))  # hf:PATH of a save_to_disk folder
    table.to_parquet(str(tmp_path / "one.parquet"))  # and of a parquet file

    unnamed = run_cli("data", "check", f"hf:{tmp_path / 'saved'}")
    assert unnamed.code == 1 and "no label column" in unnamed.stderr and "photo, kind, weight" in unnamed.stderr
    unknown = run_cli("data", "check", f"hf:{tmp_path / 'saved'}", "--label-column", "breed")
    assert unknown.code == 1 and "no column 'breed'" in unknown.stderr and "photo, kind, weight" in unknown.stderr
    for source in (tmp_path / "saved", tmp_path / "one.parquet"):
        named = run_cli("data", "check", f"hf:{source}", "--label-column", "kind", "--json")
        assert named.code == 0, named.stderr
        report = named.json()
        assert report["classes"] == ["leaf", "pod", "stem2", "stem10"]  # string labels, sorted naturally
        assert report["split"]["image_column"] == "photo" and sum(report["counts"]["test"].values()) > 0


def test_unreadable_image_bytes_are_skipped_and_reported(run_cli, tmp_path):
    from PIL import Image

    images = [Image.fromarray(p) for p in _pixels(40, 0, lambda i: i % 2)]
    cells = [{"bytes": b"not an image", "path": None}, *images[1:]]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    (tmp_path / "d" / "data").mkdir(parents=True)
    datasets.Dataset.from_dict({"image": cells, "label": [i % 2 for i in range(40)]}, features=features).to_parquet(
        str(tmp_path / "d" / "data" / "train-00000-of-00001.parquet"))
    checked = run_cli("data", "check", f"hf:{tmp_path / 'd'}", "--json")
    assert checked.code == 0, checked.stderr
    assert [f["path"] for f in checked.json()["bad_files"]] == [f"hf:{tmp_path / 'd'}/train/0"]
    strict = run_cli("data", "check", f"hf:{tmp_path / 'd'}", "--max-bad", "0")
    assert strict.code == 1 and "1 of 40 images cannot be read" in strict.stderr


def test_offline_with_nothing_cached_is_one_clear_error(tmp_path):
    cache = tmp_path / "hf-home"
    env = {**os.environ, "HF_HOME": str(cache), "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(tlcli.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "tlcli", "data", "check", "hf:AI-Lab-Makerere/beans"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert "'AI-Lab-Makerere/beans'" in lines[0] and str(cache) in lines[0] and "HF_DATASETS_OFFLINE" in lines[0]
