"""``tlcli data check``: is this data set fit to train on, and what in it is odd?"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlcli.core.config import DataConfig
from tlcli.data.dataset import ImageData, SkippedFile, problems
from tlcli.data.images import BadImageError, load_image, probe_image
from tlcli.data.imagesets import FileImages
from tlcli.data.sources import load_data

# Smaller than this on either side, an image carries little to learn from.
TINY_SIDE = 8
_FORMAT_EXTENSIONS = {
    "JPEG": {".jpg", ".jpeg"}, "PNG": {".png"}, "GIF": {".gif"}, "BMP": {".bmp"}, "WEBP": {".webp"},
    "TIFF": {".tif", ".tiff"}, "PPM": {".ppm", ".pgm"},
}


@dataclass
class DataReport:
    data: ImageData
    sizes: dict[str, dict[str, int]]  # width and height: min / median / max
    modes: dict[str, int]
    suspicious: list[SkippedFile] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # reasons it cannot be trained on

    @property
    def trainable(self) -> bool:
        return not self.problems

    @property
    def imbalance_ratio(self) -> float:
        totals = [sum(per_split[name] for per_split in self.data.class_counts().values()) for name in self.data.classes]
        return max(totals) / min(totals) if min(totals) else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.data.summary(),
            "trainable": self.trainable,
            "problems": self.problems,
            # None when a class has no usable image: JSON has no infinity.
            "imbalance_ratio": round(self.imbalance_ratio, 3) if math.isfinite(self.imbalance_ratio) else None,
            "image_sizes": self.sizes,
            "image_modes": self.modes,
            "bad_files": [vars(f) for f in self.data.bad_files],
            "ignored_files": [vars(f) for f in self.data.ignored_files],
            "skipped_links": [vars(f) for f in self.data.skipped_links],
            "duplicates": [vars(f) for f in self.data.duplicates],
            "suspicious_files": [vars(f) for f in self.suspicious],
            "notes": self.data.notes,
        }


def _spread(values: list[int]) -> dict[str, int]:
    if not values:
        return {"min": 0, "median": 0, "max": 0}
    return {"min": min(values), "median": int(statistics.median(values)), "max": max(values)}


def _inspect_file(path: Path, suspicious: list[SkippedFile]) -> tuple[int, int, str]:
    """Decode fully (header checks miss truncation); note what is odd but usable."""
    info = probe_image(path)
    image = load_image(path)
    expected = _FORMAT_EXTENSIONS.get(info.format)
    if expected and path.suffix.lower() not in expected:
        suspicious.append(SkippedFile(str(path), f"{info.format} content with a {path.suffix} extension"))
    if info.frames > 1:
        suspicious.append(SkippedFile(str(path), f"animated ({info.frames} frames): the first frame is used"))
    if min(info.width, info.height) < TINY_SIDE:
        suspicious.append(SkippedFile(str(path), f"tiny image ({info.width}x{info.height})"))
    if info.mode not in ("RGB", "L"):
        suspicious.append(SkippedFile(str(path), f"{info.mode} image, converted to {image.mode}"))
    return image.width, image.height, info.mode


def check_data(config: DataConfig) -> DataReport:
    """Load the data as training would, decode every image, and judge it.

    Structural problems raise DataError as they do in training; what training refuses once
    the data is loaded (``dataset.problems``: too many unreadable images, a class without
    training images) becomes a problem in the report, which lists every file.
    """
    data = load_data(config, judged=False)
    widths: list[int] = []
    heights: list[int] = []
    modes: Counter[str] = Counter()
    suspicious: list[SkippedFile] = []
    for split, images in data.splits.items():
        keep = []
        for index in range(len(images)):
            try:
                if isinstance(images, FileImages):
                    width, height, mode = _inspect_file(images.paths[index], suspicious)
                else:  # arrays and records: decode to learn the size and mode
                    image = images.load(index)
                    width, height, mode = image.width, image.height, image.mode
            except BadImageError as exc:
                data.bad_files.append(SkippedFile(images.name(index), str(exc)))
                continue
            widths.append(width)
            heights.append(height)
            modes[mode] += 1
            keep.append(index)
        data.splits[split] = images.subset(keep)
    report = DataReport(data, {"width": _spread(widths), "height": _spread(heights)}, dict(modes), suspicious)
    report.problems += problems(data, config.max_bad)
    return report
