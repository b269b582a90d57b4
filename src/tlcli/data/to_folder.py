"""Write any data source out as a pre-split image folder (``dest/<split>/<class>/<n>.png``).

Training on the exported folder reproduces the source's splits exactly, and the files are
ordinary images to look at, share, or feed to ``tlcli predict``.
"""

from __future__ import annotations

import re
from pathlib import Path

from tlcli.core.config import DataConfig
from tlcli.data.images import BadImageError
from tlcli.data.sources import load_data
from tlcli.core.errors import DataError


def _folder_name(class_name: str) -> str:
    return re.sub(r"[\\/:]+", "_", class_name).strip() or "_"


def export_images(config: DataConfig, dest: Path, *, limit: int | None = None) -> dict[str, int]:
    """Returns images written per split; ``limit`` caps the images per split and class."""
    data = load_data(config)
    if dest.exists() and any(dest.iterdir()):
        raise DataError(f"{dest} is not empty; export into a new folder")
    written: dict[str, int] = {}
    for split, images in data.splits.items():
        per_class: dict[int, int] = {}
        for index, label in enumerate(images.labels):
            if limit is not None and per_class.get(label, 0) >= limit:
                continue
            try:
                image = images.load(index)
            except BadImageError:
                continue
            folder = dest / split / _folder_name(data.classes[label])
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{index:05d}.png")
            per_class[label] = per_class.get(label, 0) + 1
        written[split] = sum(per_class.values())
    return written
