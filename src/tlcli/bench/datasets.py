"""The benchmarks' data sets, written as real image files from scikit-learn's handwritten digits
(the only real images available offline)."""

from __future__ import annotations

from pathlib import Path


def write_jpeg_folder(root: Path, count: int, *, width: int, height: int, seed: int, validation: bool = True) -> Path:
    """``count`` real handwritten digits (scikit-learn's), enlarged to width x height JPEGs, in
    train/<class>/ folders, or with ``validation`` split 80/20 per class into train/ and val/."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    seen: dict[int, int] = {}
    for index in range(count):
        label = int(digits.target[index])
        pixels = (digits.images[index] * (255.0 / 16.0)).astype(np.uint8)
        image = Image.fromarray(pixels, "L").resize((width, height), Image.Resampling.BICUBIC)
        noisy = np.clip(np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, (height, width)), 0, 255).astype(np.uint8)
        split = "val" if validation and seen.get(label, 0) % 5 == 4 else "train"
        seen[label] = seen.get(label, 0) + 1
        target = root / split / str(label) / f"{index:04d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.stack([noisy] * 3, axis=-1), "RGB").save(target, quality=90)
    return root


def write_digits(root: Path, *, size: int, count: int) -> Path:
    """The first ``count`` digits as root/<digit>/<index>.png, enlarged to size x size."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for index in range(min(count, len(digits.target))):
        pixels = (digits.images[index] * (255.0 / 16.0)).astype(np.uint8)
        target = root / str(int(digits.target[index])) / f"{index:04d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, "L").resize((size, size), Image.Resampling.BICUBIC).convert("RGB").save(target)
    return root
