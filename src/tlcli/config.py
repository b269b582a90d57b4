"""Every option's default, in one place.

The CLI builds these frozen dataclasses from its flags; library functions take them whole,
so a run's resolved configuration can be written next to its outputs with ``asdict``.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_ARCH = "efficientnet_b0"
# The reports' seed; it drives the split, weight initialisation and data order.
DEFAULT_SEED = 42


@dataclass(frozen=True)
class DataConfig:
    # A folder path, a name under data/ (``pokemon`` -> data/pokemon), or a built-in set.
    source: str = "digits"
    # Fractions held out when the folder is not already split into train/val/test.
    val_split: float = 0.2
    test_split: float = 0.1
    seed: int = DEFAULT_SEED
    # Unreadable images are skipped; more than this many (a fraction when below 1) fails the run.
    max_bad: float = 0.05
    # torchvision data sets only: fetch the files when they are missing and the network allows.
    download: bool = False


@dataclass(frozen=True)
class AugmentConfig:
    """Training-only augmentation; validation and test images are only resized and normalised."""

    hflip: bool = False
    rotate: float = 0.0  # degrees, either way
    zoom: float = 0.0  # 0.2 scales by a random factor in [0.8, 1.2], like Keras RandomZoom(0.2)
    contrast: float = 0.0  # 0.1 scales contrast by a random factor in [0.9, 1.1]
    color_jitter: float = 0.0  # brightness, contrast and saturation by this factor, hue by a quarter
    auto_augment: str = "none"  # none | trivial | rand

    AUTO_AUGMENT_CHOICES = ("none", "trivial", "rand")

    @property
    def enabled(self) -> bool:
        return self != AugmentConfig()


@dataclass(frozen=True)
class ModelConfig:
    arch: str = DEFAULT_ARCH
    # None: the number of classes of the data, or of the weights' own head (1000 for ImageNet).
    num_classes: int | None = None
    # imagenet | none | a path to a state dict or tlcli checkpoint; None: imagenet where the
    # architecture has pretrained weights, none for the from-scratch baselines.
    weights: str | None = None
    # Dropout before the new linear head; None keeps the architecture's own (0.2 for EfficientNet-B0).
    dropout: float | None = None
    # Hidden layer sizes of the ``mlp`` baseline (the MNIST report's 784-128-64-10).
    hidden: tuple[int, ...] = (128, 64)
    # none | backbone | all | last:N | blocks:N | re:PATTERN; None: backbone with weights, else none.
    freeze: str | None = None
    # Let frozen BatchNorm layers keep updating their running statistics.
    bn_train: bool = False
    # Square input side; None takes the preset of the weights or the architecture.
    input_size: int | None = None
