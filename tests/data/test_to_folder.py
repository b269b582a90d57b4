"""``tlcli.data.to_folder.export_images``: any source written out as ``dest/<split>/<class>/<n>.png``,
whose loading gives back the source's splits, images and classes exactly."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import write_image
from tlcli.core.config import DataConfig
from tlcli.core.errors import DataError
from tlcli.data.sources import load_data
from tlcli.data.to_folder import export_images

pytestmark = pytest.mark.usefixtures("isolated")


def _pixels_per_split(config: DataConfig) -> dict[str, list[tuple[str, bytes]]]:
    """Each split's images as sorted (class, pixel bytes): what a round trip must keep."""
    data = load_data(config)
    return {split: sorted((data.classes[label], np.asarray(images.load(i)).tobytes()) for i, label in enumerate(images.labels))
            for split, images in data.splits.items()}


def test_the_exported_folder_reproduces_the_sources_splits_and_pixels(tiny, tmp_path):
    config = DataConfig(source=str(tiny), val_split=0.2, test_split=0.2)
    written = export_images(config, tmp_path / "out")
    source = _pixels_per_split(config)
    assert written == {split: len(images) for split, images in source.items()} and sum(written.values()) == 12
    exported = DataConfig(source=str(tmp_path / "out"))
    assert load_data(exported).split_info["method"] == "folders"  # pre-split: no new random split
    assert _pixels_per_split(exported) == source


def test_export_writes_numbered_pngs_under_split_and_class(tiny, tmp_path):
    export_images(DataConfig(source=str(tiny), val_split=0.2, test_split=0.2), tmp_path / "out")
    files = sorted(path.relative_to(tmp_path / "out") for path in (tmp_path / "out").rglob("*") if path.is_file())
    assert {path.parts[0] for path in files} == {"train", "val", "test"}
    assert {path.parts[1] for path in files} == {"a", "b"}
    assert all(path.suffix == ".png" and path.stem.isdigit() and len(path.stem) == 5 for path in files)


def test_limit_caps_the_images_per_split_and_class(tiny, tmp_path):
    written = export_images(DataConfig(source=str(tiny), val_split=0.34, test_split=0.0), tmp_path / "out", limit=2)
    assert written == {"train": 4, "val": 4, "test": 0}
    for split in ("train", "val"):
        for name in ("a", "b"):
            assert len(list((tmp_path / "out" / split / name).glob("*.png"))) == 2


def test_a_folder_that_is_not_empty_is_refused_and_left_alone(tiny, tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=f"{dest} is not empty; export into a new folder"):
        export_images(DataConfig(source=str(tiny)), dest)
    assert [p.name for p in dest.iterdir()] == ["notes.txt"]


def test_an_empty_existing_folder_is_used(tiny, tmp_path):
    (tmp_path / "out").mkdir()
    assert sum(export_images(DataConfig(source=str(tiny)), tmp_path / "out").values()) == 12


def test_an_image_that_cannot_be_decoded_is_skipped(tiny, tmp_path):
    whole = write_image(tiny / "a" / "99.png", size=(64, 64), seed=99).read_bytes()
    (tiny / "a" / "99.png").write_bytes(whole[: len(whole) // 2])  # the header reads; the pixels do not
    written = export_images(DataConfig(source=str(tiny), max_bad=0.0), tmp_path / "out")
    assert sum(written.values()) == 12
    assert sum(1 for _ in (tmp_path / "out").rglob("*.png")) == 12


def test_class_names_with_path_separators_become_one_folder_each(tmp_path):
    lines = ["image,label"]
    for i in range(6):
        label = "cats/big" if i % 2 else "dogs:small"
        write_image(tmp_path / "images" / f"{i}.png", size=(8, 8), seed=i)
        lines.append(f"images/{i}.png,{label}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    written = export_images(DataConfig(source=str(tmp_path / "labels.csv"), val_split=0.0, test_split=0.0), tmp_path / "out")
    assert written["train"] == 6
    assert sorted(p.name for p in (tmp_path / "out" / "train").iterdir()) == ["cats_big", "dogs_small"]
    assert not (tmp_path / "out" / "train" / "cats").exists()
