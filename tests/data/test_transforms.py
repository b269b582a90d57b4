"""Preprocessing presets and training augmentation: shapes, channels, normalisation, randomness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from tlcli.core.config import AugmentConfig
from tlcli.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocess, build_transform
from tlcli.core.errors import TlcliError

GRAY_PRESET = Preprocess(28, 28, (0.1307,), (0.3081,), "bilinear", 1)


def _noise(size=(40, 30), mode="RGB", seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = 3 if mode == "RGB" else 1
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels if channels == 3 else pixels[..., 0], mode)


@pytest.mark.parametrize("preprocess", [Preprocess(24, 24), Preprocess(16, 20), Preprocess(32, 36, interpolation="bicubic")])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_float_tensor_of_channels_by_size_by_size(preprocess, mode):
    for size in ((40, 30), (30, 40), (7, 7), (1, 1)):
        out = build_transform(preprocess)(_noise(size, mode))
        assert out.dtype == torch.float32
        assert tuple(out.shape) == (3, preprocess.input_size, preprocess.input_size)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_one_channel_preset_gives_one_channel(mode):
    out = build_transform(GRAY_PRESET)(_noise((50, 40), mode))
    assert tuple(out.shape) == (1, 28, 28) and out.dtype == torch.float32


def test_normalisation_uses_the_preset_mean_and_std():
    colour = (200, 100, 50)
    out = build_transform(Preprocess(8, 8))(Image.new("RGB", (12, 10), colour))
    for channel, value in enumerate(colour):
        expected = (value / 255 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        assert torch.allclose(out[channel], torch.full((8, 8), expected), atol=1e-5)
    custom = Preprocess(8, 8, (0.5, 0.25, 0.0), (0.5, 0.25, 2.0))
    out = build_transform(custom)(Image.new("RGB", (8, 8), (255, 255, 255)))
    assert torch.allclose(out.mean(dim=(1, 2)), torch.tensor([1.0, 3.0, 0.5]), atol=1e-5)


def test_grayscale_is_repeated_into_three_channels_for_colour_models():
    out = build_transform(Preprocess(8, 8))(Image.new("L", (8, 8), 77))
    for channel in range(3):
        expected = (77 / 255 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        assert torch.allclose(out[channel], torch.full((8, 8), expected), atol=1e-5)
    # Un-normalised, the three channels carry the same gray value.
    raw = out * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    assert torch.allclose(raw[0], raw[1], atol=1e-5) and torch.allclose(raw[1], raw[2], atol=1e-5)


def test_colour_is_made_gray_for_one_channel_models():
    out = build_transform(GRAY_PRESET)(Image.new("RGB", (28, 28), (90, 90, 90)))
    assert torch.allclose(out, torch.full((1, 28, 28), (90 / 255 - 0.1307) / 0.3081), atol=1e-5)
    # Luminance, not one channel picked: pure red is darker than pure green.
    red = build_transform(GRAY_PRESET)(Image.new("RGB", (28, 28), (255, 0, 0))).mean()
    green = build_transform(GRAY_PRESET)(Image.new("RGB", (28, 28), (0, 255, 0))).mean()
    assert red < green


def test_resize_then_centre_crop_keeps_the_middle():
    # 40x20: the short side is already 20, so the 16-pixel centre crop spans columns 12..27.
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 255, 0), (12, 0, 28, 20))
    out = build_transform(Preprocess(16, 20, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))(image)
    assert out.shape == (3, 16, 16)
    assert torch.allclose(out[1], torch.ones(16, 16), atol=1e-3) and out[0].abs().max() < 1e-3


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (300, 300), (641, 229), (230, 1000), (64, 48)])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_geometry_is_torchvisions_resize_then_centre_crop(size, interpolation):
    """Shrinking, resampling only the crop's box gives torchvision's pixels up to a rare
    one-level rounding; enlarging gives them exactly."""
    from torchvision import transforms

    preprocess = Preprocess(224, 256, interpolation=interpolation)
    image = _noise(size, seed=4).filter(ImageFilter.GaussianBlur(3))  # photo-like: smooth, not white noise
    reference = transforms.Compose([
        transforms.Resize(256, interpolation=transforms.InterpolationMode(interpolation)), transforms.CenterCrop(224), transforms.PILToTensor(),
    ])(image)
    ours = build_transform(preprocess, normalize=False)(image)
    assert ours.dtype == torch.uint8 and ours.shape == reference.shape == (3, 224, 224)
    difference = (ours.int() - reference.int()).abs()
    if min(size) < 256:
        assert difference.max() == 0
    else:
        assert difference.max() <= 1 and (difference > 0).float().mean() < 3e-3


@pytest.mark.parametrize("size", [(30, 20), (21, 40), (19, 19)])
def test_a_preset_whose_crop_exceeds_the_resize_pads_like_torchvision(size):
    from torchvision import transforms

    image = _noise(size, seed=5)
    reference = transforms.Compose([transforms.Resize(19), transforms.CenterCrop(24), transforms.PILToTensor()])(image)
    assert torch.equal(build_transform(Preprocess(24, 19), normalize=False)(image), reference)


def test_equal_sizes_resize_the_whole_image_without_cropping():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (36, 0, 40, 20))  # a blue strip at the right edge survives only without a crop
    out = build_transform(Preprocess(16, 16, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))(image)
    assert out[2, :, -1].min() > 0.9 and out[0, :, 0].min() > 0.9


def test_eval_transform_is_deterministic():
    transform = build_transform(Preprocess(24, 28))
    image = _noise((50, 37))
    first = transform(image)
    for seed in range(10):
        torch.manual_seed(seed)
        assert torch.equal(transform(image), first)


AUGMENTATIONS = {
    "hflip": AugmentConfig(hflip=True),
    "rotate": AugmentConfig(rotate=30),
    "zoom": AugmentConfig(zoom=0.3),
    "contrast": AugmentConfig(contrast=0.5),
    "color_jitter": AugmentConfig(color_jitter=0.5),
    "trivial": AugmentConfig(auto_augment="trivial"),
    "rand": AugmentConfig(auto_augment="rand"),
}


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
@pytest.mark.parametrize("preset", [Preprocess(32, 32), GRAY_PRESET], ids=["rgb", "gray"])
def test_each_augmentation_changes_training_images_and_eval_does_not(name, preset):
    image = _noise((32, 32), seed=1)
    train = build_transform(preset, AUGMENTATIONS[name])
    plain = build_transform(preset)(image)
    torch.manual_seed(0)
    outputs = [train(image) for _ in range(16)]
    assert all(out.shape == plain.shape and out.dtype == torch.float32 for out in outputs)
    assert sum(not torch.equal(out, plain) for out in outputs) >= 2
    assert len({out.numpy().tobytes() for out in outputs}) >= 2
    assert build_transform(preset, AugmentConfig())(image).equal(plain)  # no augmentation: the eval pixels


def test_hflip_gives_the_image_or_its_mirror():
    image = _noise((32, 32), seed=2)
    plain = build_transform(Preprocess(32, 32))(image)
    mirrored = build_transform(Preprocess(32, 32))(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    train = build_transform(Preprocess(32, 32), AugmentConfig(hflip=True))
    torch.manual_seed(0)
    seen = {"plain": 0, "mirror": 0}
    for _ in range(30):
        out = train(image)
        if torch.allclose(out, plain, atol=1e-5):
            seen["plain"] += 1
        else:
            assert torch.allclose(out, mirrored, atol=1e-5)
            seen["mirror"] += 1
    assert seen["plain"] and seen["mirror"]


def test_augmentation_is_reproducible_from_the_torch_seed():
    image = _noise((32, 32), seed=3)
    train = build_transform(Preprocess(32, 32), AugmentConfig(rotate=20, zoom=0.2, color_jitter=0.3, hflip=True))
    torch.manual_seed(5)
    first = [train(image) for _ in range(4)]
    torch.manual_seed(5)
    assert all(torch.equal(a, train(image)) for a in first)


@pytest.mark.parametrize(
    "augment,option",
    [
        (AugmentConfig(auto_augment="magic"), "auto augment"),
        (AugmentConfig(auto_augment="Trivial"), "auto augment"),
        (AugmentConfig(zoom=1.0), "zoom"),
        (AugmentConfig(zoom=1.5), "zoom"),
        (AugmentConfig(zoom=-0.1), "zoom"),
        (AugmentConfig(contrast=1.0), "contrast"),
        (AugmentConfig(color_jitter=-0.5), "color jitter"),
        (AugmentConfig(rotate=-1), "rotation"),
        (AugmentConfig(rotate=181), "rotation"),
        (AugmentConfig(rotate=float("nan")), "rotation"),
        (AugmentConfig(zoom=float("nan")), "zoom"),
    ],
)
def test_invalid_augment_settings_are_errors(augment, option):
    with pytest.raises(TlcliError, match=option) as caught:
        build_transform(Preprocess(32, 32), augment)
    assert "\n" not in str(caught.value)


def test_preprocess_survives_a_round_trip_through_a_dict():
    preset = Preprocess(224, 256, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), "bicubic", 3)
    again = Preprocess.from_dict(preset.to_dict())
    assert again == preset
    image = _noise((60, 50))
    assert torch.equal(build_transform(again)(image), build_transform(preset)(image))
    assert preset.resized(112) == Preprocess(112, 128, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), "bicubic", 3)
