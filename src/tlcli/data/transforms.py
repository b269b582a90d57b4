"""Preprocessing presets and training augmentation.

A ``Preprocess`` says how a model wants its pixels (size, resize, mean, std, interpolation,
channels). It is stored in every checkpoint so evaluation, prediction and export apply
exactly what training applied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from tlcli.core.config import AUTO_AUGMENTS, AugmentConfig
from tlcli.core.errors import TlcliError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    input_size: int  # square side the model sees
    resize_size: int  # shorter side before the centre crop; equal to input_size: resize the whole image
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    channels: int = 3

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Preprocess:
        return cls(**{**values, "mean": tuple(values["mean"]), "std": tuple(values["std"])})

    def resized(self, input_size: int) -> Preprocess:
        """The same preset at another input size, keeping the resize-to-crop ratio."""
        ratio = self.resize_size / self.input_size
        return Preprocess(input_size, round(input_size * ratio), self.mean, self.std, self.interpolation, self.channels)


class ToChannels:
    """Grayscale to 3 channels for models that want colour, and colour to 1 for those that don't."""

    def __init__(self, channels: int):
        self.mode = "RGB" if channels == 3 else "L"

    def __call__(self, image: Image.Image) -> Image.Image:
        return image if image.mode == self.mode else image.convert(self.mode)

    def __repr__(self) -> str:
        return f"ToChannels({self.mode})"


_PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX, "hamming": Image.Resampling.HAMMING, "lanczos": Image.Resampling.LANCZOS,
}


class ResizeCrop:
    """The preset's geometry on a PIL image: the shorter side resized to ``resize_size`` and the
    centre ``input_size`` square cropped, as torchvision's ``Resize`` + ``CenterCrop`` do (equal
    sizes: the whole image resized to the square).

    When the image shrinks, PIL resamples only the crop's box of the source: the same filter
    taps over the same source pixels, 40 % less work for a 256 -> 224 crop. Rounding inside
    PIL's fixed-point weights then moves about one pixel in 1,000 by one level against resizing
    first and cropping after. Enlarged images are resized whole, then cropped: exact.
    """

    def __init__(self, preprocess: Preprocess):
        if preprocess.interpolation not in _PIL_FILTERS:
            raise TlcliError(f"unknown interpolation '{preprocess.interpolation}'; choose one of {', '.join(_PIL_FILTERS)}")
        self.resize_size, self.crop_size = preprocess.resize_size, preprocess.input_size
        self.filter = _PIL_FILTERS[preprocess.interpolation]

    def __call__(self, image: Image.Image) -> Image.Image:
        crop = self.crop_size
        if self.resize_size == crop:
            return image.resize((crop, crop), self.filter)
        width, height = image.size
        # torchvision's sizes: the shorter side exact, the longer one truncated.
        if width <= height:
            new_width, new_height = self.resize_size, int(self.resize_size * height / width)
        else:
            new_width, new_height = int(self.resize_size * width / height), self.resize_size
        box = _centre_box(new_width, new_height, crop)
        if new_width > width or new_height > height or min(new_width, new_height) < crop:
            # PIL fills a crop outside the image with black, as torchvision pads.
            return image.resize((new_width, new_height), self.filter).crop(box)
        x_scale, y_scale = width / new_width, height / new_height
        left, top, right, bottom = box
        return image.resize((crop, crop), self.filter, box=(left * x_scale, top * y_scale, right * x_scale, bottom * y_scale))

    def __repr__(self) -> str:
        return f"ResizeCrop({self.resize_size}, {self.crop_size}, {self.filter.name.lower()})"


def _centre_box(width: int, height: int, crop: int) -> tuple[int, int, int, int]:
    """torchvision's centre crop, its rounding included; a side shorter than the crop is padded
    (PIL fills outside the image with black), the odd pixel at the end as torchvision does."""

    def start(size: int) -> int:
        return -((crop - size) // 2) if size < crop else int(round((size - crop) / 2.0))

    left, top = start(width), start(height)
    return left, top, left + crop, top + crop


def to_uint8_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB or L -> uint8 (C, H, W)."""
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True))
    return pixels.unsqueeze(0) if pixels.ndim == 2 else pixels.permute(2, 0, 1).contiguous()


class Normalize:
    """uint8 pixels -> float, minus the preset's mean, over its std (the formula ``UInt8Input`` uses)."""

    def __init__(self, preprocess: Preprocess):
        self.mean = torch.tensor(preprocess.mean).view(-1, 1, 1) * 255.0
        self.std = torch.tensor(preprocess.std).view(-1, 1, 1) * 255.0

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels.float() - self.mean) / self.std


def _augmentations(augment: AugmentConfig, channels: int) -> list:
    steps: list = []
    if augment == AugmentConfig():
        return steps
    # Only here: importing torchvision's v2 transforms loads torch._dynamo (2 s; see tlcli/core/vision.py).
    from torchvision.transforms import v2

    if augment.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if augment.rotate or augment.zoom:
        scale = (1.0 - augment.zoom, 1.0 + augment.zoom) if augment.zoom else None
        steps.append(v2.RandomAffine(degrees=augment.rotate, scale=scale))
    if augment.contrast:
        steps.append(v2.ColorJitter(contrast=augment.contrast))
    if augment.color_jitter:
        strength = augment.color_jitter
        hue = min(strength / 4, 0.5) if channels == 3 else 0.0
        steps.append(v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength, hue=hue))
    if augment.auto_augment == "trivial":
        steps.append(v2.TrivialAugmentWide())
    elif augment.auto_augment == "rand":
        steps.append(v2.RandAugment())
    return steps


def validate_augment(augment: AugmentConfig) -> None:
    if augment.auto_augment not in AUTO_AUGMENTS:
        raise TlcliError(
            f"unknown auto augment '{augment.auto_augment}'; choose one of {', '.join(AUTO_AUGMENTS)}"
        )
    for name in ("zoom", "contrast", "color_jitter"):
        value = getattr(augment, name)
        if not 0.0 <= value < 1.0:
            raise TlcliError(f"{name.replace('_', ' ')} must be at least 0 and below 1, got {value}")
    if not 0.0 <= augment.rotate <= 180.0:  # also refuses NaN
        raise TlcliError(f"rotation is in degrees from 0 to 180, got {augment.rotate}")


def build_augment(augment: AugmentConfig, channels: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The training augmentation alone, for uint8 tensors already resized and cropped; None when
    there is none."""
    validate_augment(augment)
    steps = _augmentations(augment, channels)
    if not steps:
        return None
    from torchvision.transforms import v2

    return v2.Compose(steps)


class ImageTransform:
    """PIL image (RGB or L) -> tensor (C, S, S): the preset's channels and geometry, then the
    augmentation (uint8 in, uint8 out), then normalisation unless ``normalize`` is off."""

    def __init__(self, preprocess: Preprocess, augment: Callable[[torch.Tensor], torch.Tensor] | None, normalize: bool):
        self.channels = ToChannels(preprocess.channels)
        self.resize = ResizeCrop(preprocess)
        self.augment = augment
        self.normalize = Normalize(preprocess) if normalize else None

    def __call__(self, image: Image.Image) -> torch.Tensor:
        pixels = to_uint8_tensor(self.resize(self.channels(image)))
        if self.augment is not None:
            pixels = self.augment(pixels)
        return self.normalize(pixels) if self.normalize is not None else pixels


def build_transform(preprocess: Preprocess, augment: AugmentConfig | None = None, *, normalize: bool = True) -> ImageTransform:
    """PIL image (RGB or L) -> normalised float tensor (C, H, W); augmentation only when given.

    ``normalize=False`` stops at the resized uint8 tensor, for exported models that normalise
    inside their graph. The resize is PIL's, as in torchvision's classic transforms and the
    reports, so the pixels are theirs.
    """
    return ImageTransform(preprocess, build_augment(augment, preprocess.channels) if augment is not None else None, normalize)
