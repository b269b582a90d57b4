"""The frozen-feature cache and the decoded-image cache: faster, and the same results."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from tlcli.run.checkpoint import load_checkpoint
from tlcli.core.config import AugmentConfig, DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from tlcli.data.decoded import CachedImages, decode_images
from tlcli.data.imagesets import FileImages
from tlcli.data.loading import TransformedImages, decoded_batches, make_loader
from tlcli.data.transforms import Preprocess, build_augment, build_transform
from tlcli.engine.device import resolve_precision
from tlcli.run.features import NotCacheable, extract, feature_head
from tlcli.models.inputs import UInt8Input
from tlcli.run.resume import resume
from tests.helpers import train, write_image
from tlcli.bench.datasets import write_digits

pytestmark = pytest.mark.usefixtures("_one_thread", "isolated")


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> str:
    """Real handwritten digits as PNG files at 32x32, 24 of each class: what the caches must hold to."""
    return str(write_digits(tmp_path_factory.mktemp("digits"), size=32, count=240))


@pytest.fixture
def frozen(digits):
    return partial(_frozen, digits)


def _frozen(digits: str, out: str, *, epochs: int = 3, augment: AugmentConfig = AugmentConfig(), **run) -> TrainConfig:
    """A frozen random-weight ResNet-18 on the digits: phase 1 without pretrained weights, the
    head trained epoch by epoch as it is without the cache (the default probe needs the cache)."""
    return TrainConfig(
        data=DataConfig(digits),
        model=ModelConfig(arch="resnet18", weights="none", freeze="backbone", input_size=32),
        optim=OptimConfig(head_fit="epochs"),
        augment=augment,
        run=RunConfig(epochs=epochs, out=out, workers=0, **run),
    )


def _metrics(history) -> list[float]:
    """Every figure of every epoch, in one flat list (timings and the method's name left out)."""
    return [row[key] for row in history for key in sorted(row) if key not in ("seconds", "images_per_s", "method")]


def _log(result) -> str:
    return (result.run_dir / "log.txt").read_text()


def test_cached_features_train_exactly_as_recomputing_them(frozen):
    cached = train(frozen("checkpoints/cached", epochs=2))
    recomputed = train(frozen("checkpoints/recomputed", epochs=2, cache_features="off"))
    assert "features cached, 1 view per image, in memory" in _log(cached)
    assert "features computed every step" in _log(recomputed)
    assert _metrics(cached.history) == pytest.approx(_metrics(recomputed.history), rel=1e-5, abs=1e-6)
    assert cached.history[-1]["train_loss"] < cached.history[0]["train_loss"]  # the head learns
    # The checkpoint holds the whole network, trained head included, as without the cache.
    ours, theirs = (load_checkpoint(r.run_dir / "last.pt")["state_dict"] for r in (cached, recomputed))
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.allclose(ours[key].float(), theirs[key].float(), atol=1e-5), key


def test_resuming_a_cached_run_continues_exactly(frozen):
    constant = OptimConfig(schedule="none")  # so that a 1-epoch run is the first epoch of a 2-epoch one
    whole = train(replace(frozen("checkpoints/whole", epochs=2), optim=constant))
    train(replace(frozen("checkpoints/part", epochs=1), optim=constant))
    resumed = resume("checkpoints/part/last.pt", epochs=2)
    assert _metrics(resumed.history) == pytest.approx(_metrics(whole.history), rel=1e-6, abs=1e-7)


def test_features_on_disk_are_reused_by_a_second_run_and_a_damaged_file_is_recomputed(tmp_path, frozen):
    cache = tmp_path / "features"
    first = train(frozen("checkpoints/first", epochs=1, cache_dir=str(cache)))
    files = sorted(cache.glob("features-*.pt"))
    assert len(files) == 2  # train and val
    assert "saved to" in _log(first)
    second = train(frozen("checkpoints/second", epochs=1, cache_dir=str(cache)))
    assert "reused" in _log(second)
    assert _metrics(second.history) == pytest.approx(_metrics(first.history))
    for file in files:
        file.write_bytes(b"not a cache")
    third = train(frozen("checkpoints/third", epochs=1, cache_dir=str(cache)))
    assert "saved to" in _log(third)
    assert _metrics(third.history) == pytest.approx(_metrics(first.history))


def test_features_of_augmented_images_are_never_reused_for_plain_ones(tmp_path, frozen):
    cache = str(tmp_path / "features")
    train(frozen("checkpoints/flipped", epochs=1, cache_dir=cache, feature_views=1, augment=AugmentConfig(hflip=True)))
    plain = train(frozen("checkpoints/plain", epochs=1, cache_dir=cache))
    assert "saved to" in _log(plain) and "reused" not in _log(plain)


def test_augmented_views_are_cached_and_drawn_per_epoch(frozen):
    result = train(frozen("checkpoints/views", epochs=2, augment=AugmentConfig(hflip=True, rotate=20), feature_views=3))
    assert "features cached, 2 views per image" in _log(result)  # a third view would never be drawn in 2 epochs
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_training_layers_before_the_head_turn_the_cache_off(run_cli, frozen):
    config = frozen("checkpoints/bn", epochs=1)
    result = train(replace(config, model=replace(config.model, bn_train=True)))
    assert "features computed every step (--bn-train updates BatchNorm statistics" in _log(result)
    refused = run_cli("train", "--data", "digits", "--arch", "simple_cnn", "--epochs", "1", "--cache-features", "on", "--out", "checkpoints/x")
    assert refused.code == 2  # a bad option value for this model, refused before the data is read
    assert refused.stderr.count("\n") == 1 and "--cache-features on needs a frozen backbone" in refused.stderr


def test_a_head_followed_by_more_layers_is_detected():
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3), nn.Tanh())
    for parameter in network[0].parameters():
        parameter.requires_grad_(False)
    feature_head(network, "3", bn_train=False)  # nothing before the head trains: only running it tells
    batches = [(torch.rand(3, 8, 8), 0, i, None) for i in range(4)]
    loader = make_loader(batches, batch_size=2, shuffle=False, workers=0, seed=0)
    precision = resolve_precision("off", torch.device("cpu"))
    with pytest.raises(NotCacheable, match="layers follow the head"):
        extract(network, "3", loader, head=network[3], views=1, seed=0, device=torch.device("cpu"), precision=precision, channels_last=False)
    network = network[:4]
    features = extract(network, "3", loader, head=network[3], views=1, seed=0, device=torch.device("cpu"), precision=precision,
                       channels_last=False)
    assert features.values.shape == (4, 1, 4) and bool(features.valid.all())


def test_a_dropout_inside_the_frozen_part_makes_it_uncacheable():
    network = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Dropout(0.5), nn.Linear(8, 8), nn.Dropout(0.2), nn.Linear(8, 2))
    for layer in (network[1], network[3]):
        layer.requires_grad_(False)
    with pytest.raises(NotCacheable, match="2 \\(Dropout\\)"):
        feature_head(network, "5", bn_train=False)
    network[2] = nn.Identity()
    assert feature_head(network, "5", bn_train=False).dropout == 0.2  # the head's own dropout is replayed


def _photos(folder, tmp_path):
    """JPEG and PNG files of several sizes and modes, one unreadable."""
    paths = [
        write_image(folder / "a.jpg", size=(120, 90)),
        write_image(folder / "b.png", size=(40, 70), mode="L"),
        write_image(folder / "c.png", size=(33, 33), mode="RGBA"),
        write_image(folder / "d.jpg", size=(640, 480), seed=3),
    ]
    broken = folder / "e.jpg"
    broken.write_bytes(paths[0].read_bytes()[:200])
    return FileImages(tmp_path, [*paths, broken], [0, 1, 0, 1, 0])


def test_threaded_decoding_gives_the_loaders_batches_in_its_order(tmp_path):
    images = _photos(tmp_path / "photos", tmp_path)
    dataset = TransformedImages(images, build_transform(Preprocess(24, 28)), draft_size=28)
    loader = make_loader(dataset, batch_size=2, shuffle=False, workers=0, seed=0)
    threaded, plain = list(decoded_batches(loader, threads=2)), list(loader)
    assert len(threaded) == len(plain) == 3
    for ours, theirs in zip(threaded, plain):
        assert torch.equal(ours.images, theirs.images) and torch.equal(ours.indices, theirs.indices)
        assert torch.equal(ours.labels, theirs.labels) and ours.skipped == theirs.skipped
    assert threaded[-1].skipped and not len(threaded[-1].labels)  # the broken file, named


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_decoded_images_are_the_pixels_the_uncached_pipeline_makes(tmp_path, where):
    images = _photos(tmp_path / "photos", tmp_path)
    preprocess = Preprocess(24, 28)
    decoded = decode_images(images, preprocess, where=where, cache_dir=tmp_path / "cache")
    uncached = TransformedImages(images, build_transform(preprocess, normalize=False), draft_size=preprocess.resize_size)
    cached = CachedImages(decoded, images.labels)
    for index in range(4):
        assert torch.equal(cached[index][0], uncached[index][0])
    assert cached[4][0] is None and cached[4][3].startswith(f"{images.paths[4]}: cannot be")
    # Augmentation on the cached uint8 tensor is the uncached pipeline's, draw for draw.
    augment = AugmentConfig(hflip=True, rotate=30)
    cached = CachedImages(decoded, images.labels, build_augment(augment, 3))
    uncached = TransformedImages(images, build_transform(preprocess, augment, normalize=False), draft_size=preprocess.resize_size)
    for index in range(4):
        torch.manual_seed(index)
        ours = cached[index][0]
        torch.manual_seed(index)
        assert torch.equal(ours, uncached[index][0])


def test_the_disk_cache_is_reused_until_an_image_changes(tmp_path):
    images = _photos(tmp_path / "photos", tmp_path)
    preprocess = Preprocess(24, 28)
    first = decode_images(images, preprocess, where="disk", cache_dir=tmp_path / "cache")
    again = decode_images(images, preprocess, where="disk", cache_dir=tmp_path / "cache")
    assert not first.reused and again.reused and again.where == first.where
    assert np.array_equal(np.asarray(again.pixels), np.asarray(first.pixels)) and again.failures == first.failures
    write_image(images.paths[0], size=(120, 90), seed=9)
    changed = decode_images(images, preprocess, where="disk", cache_dir=tmp_path / "cache")
    assert not changed.reused and changed.where != first.where
    assert not list((tmp_path / "cache").glob(".*.tmp"))  # no partial file left behind


def test_training_from_the_image_cache_matches_decoding_every_epoch(digits):
    def config(out, cache_images):
        return TrainConfig(data=DataConfig(digits), model=ModelConfig(arch="simple_cnn"), augment=AugmentConfig(hflip=True),
                           run=RunConfig(epochs=2, out=out, workers=0, cache_images=cache_images))

    cached = train(config("checkpoints/cached", "memory"))
    decoded = train(config("checkpoints/decoded", "off"))
    assert "images cached in memory" in _log(cached) and "images decoded every epoch" in _log(decoded)
    assert _metrics(cached.history) == pytest.approx(_metrics(decoded.history), rel=1e-5, abs=1e-6)


def test_large_jpegs_are_decoded_at_reduced_scale_keeping_the_size_needed(tmp_path):
    from tlcli.data.images import load_image

    big = write_image(tmp_path / "big.jpg", size=(2000, 1500))
    small = write_image(tmp_path / "small.jpg", size=(400, 300))
    png = write_image(tmp_path / "big.png", size=(2000, 1500))
    drafted = load_image(big, draft_size=256)
    assert 256 <= min(drafted.size) < 1500 and drafted.size == (500, 375)  # 1/4 scale
    assert load_image(small, draft_size=256).size == (400, 300)  # under twice the size: full decode
    assert load_image(png, draft_size=256).size == (2000, 1500)  # only JPEG decoders can draft


def test_uint8_input_normalises_like_the_transform_and_augments_only_in_training():
    preprocess = Preprocess(8, 8)
    pixels = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    flip = lambda image: image.flip(-1)  # noqa: E731
    network = UInt8Input(nn.Identity(), preprocess, flip)
    expected = build_transform(preprocess).normalize(pixels)
    assert torch.allclose(network.eval()(pixels), expected, atol=1e-5)
    assert torch.allclose(network.train()(pixels), expected.flip(-1), atol=1e-5)
