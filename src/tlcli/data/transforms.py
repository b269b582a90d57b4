"""Preprocessing presets and training augmentation.

A ``Preprocess`` says how a model wants its pixels (size, resize, mean, std, interpolation,
channels). It is stored in every checkpoint so evaluation, prediction and export apply
exactly what training applied.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2

from tlcli.config import AugmentConfig
from tlcli.errors import TlcliError

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


def _resize(preprocess: Preprocess) -> list:
    interpolation = InterpolationMode(preprocess.interpolation)
    if preprocess.resize_size == preprocess.input_size:
        return [v2.Resize((preprocess.input_size, preprocess.input_size), interpolation=interpolation, antialias=True)]
    return [
        v2.Resize(preprocess.resize_size, interpolation=interpolation, antialias=True),
        v2.CenterCrop(preprocess.input_size),
    ]


def _augmentations(augment: AugmentConfig, channels: int) -> list:
    steps: list = []
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
    if augment.auto_augment not in AugmentConfig.AUTO_AUGMENT_CHOICES:
        raise TlcliError(
            f"unknown --auto-augment '{augment.auto_augment}'; choose one of {', '.join(AugmentConfig.AUTO_AUGMENT_CHOICES)}"
        )
    for name in ("zoom", "contrast", "color_jitter"):
        value = getattr(augment, name)
        if not 0.0 <= value < 1.0:
            raise TlcliError(f"--{name.replace('_', '-')} must be at least 0 and below 1, got {value}")
    if not 0.0 <= augment.rotate <= 180.0:  # also refuses NaN
        raise TlcliError(f"--rotate is in degrees from 0 to 180, got {augment.rotate}")


def build_augment(augment: AugmentConfig, channels: int) -> v2.Compose | None:
    """The training augmentation alone, for uint8 tensors already resized and cropped; None when
    there is none."""
    validate_augment(augment)
    steps = _augmentations(augment, channels)
    return v2.Compose(steps) if steps else None


def build_transform(preprocess: Preprocess, augment: AugmentConfig | None = None, *, normalize: bool = True) -> v2.Compose:
    """PIL image (RGB or L) -> normalised float tensor (C, H, W); augmentation only when given.

    ``normalize=False`` stops at the resized uint8 tensor, for exported models that normalise
    inside their graph.
    """
    # Resizing the PIL image (PIL's resampling, as torchvision's classic transforms and the
    # reports do) gives the pixels those pipelines give, and is faster than resizing a tensor.
    steps: list = [ToChannels(preprocess.channels), *_resize(preprocess), v2.ToImage()]
    if augment is not None:
        validate_augment(augment)
        steps += _augmentations(augment, preprocess.channels)
    if normalize:
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(preprocess.mean), list(preprocess.std))]
    return v2.Compose(steps)
