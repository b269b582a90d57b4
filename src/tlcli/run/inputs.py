"""What the training loop iterates over: images (decoded once when cached) or cached features.

``build_inputs`` picks the fastest exact path for a run:
- the frozen-feature cache when everything before the head is a fixed function (phase 1);
- otherwise uint8 images, decoded and resized once into the decoded-image cache, normalised
  (and on a GPU augmented) on the device by a ``UInt8Input`` wrapped around the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tlcli.core.cache import default_cache_dir
from tlcli.core.config import TrainConfig
from tlcli.data.dataset import ImageData
from tlcli.data.decoded import CachedImages, choose_image_cache, decode_images
from tlcli.data.imagesets import ImageSet
from tlcli.data.loading import TransformedImages, make_loader
from tlcli.data.transforms import build_augment, build_transform
from tlcli.engine.device import Precision, default_workers
from tlcli.engine.distributed import gather_objects, on_main
from tlcli.core.host import available_cores
from tlcli.engine.probe import LinearProbe, ProbeChoice, choose_weight_decay, make_lbfgs
from tlcli.core.errors import TlcliError
from tlcli.run.features import (
    FeatureHead,
    Features,
    FeatureSet,
    NotCacheable,
    backbone_digest,
    extract,
    feature_head,
    features_key,
    inference_copy,
    load_cached,
    save_cached,
)
from tlcli.models.inputs import UInt8Input
from tlcli.models.registry import BuiltModel


@dataclass
class TrainingInputs:
    model: nn.Module  # what the loop trains and evaluates: a FeatureHead, or the uint8-input network
    train_loader: DataLoader
    val_loader: DataLoader | None
    channels_last: bool  # loop inputs are images to put in channels-last
    paths: dict[str, str] = field(default_factory=dict)  # features / images: how each is served, for the log
    workers: int = 0  # loader processes, as resolved from --workers


def wants_channels_last(setting: bool | None, model: nn.Module) -> bool:
    """None (auto): on for convolutional networks, 1.4-2.7x faster on the CPU; off for the rest,
    where it only costs a copy."""
    if setting is not None:
        return setting
    return any(isinstance(module, nn.Conv2d) for module in model.modules())


def _image_datasets(data: ImageData, preprocess, config: TrainConfig, *, mode: str, augment, workers: int, observer, paths: dict):
    """(train, val) datasets of uint8 images; ``mode`` is the --cache-images setting."""
    train_images, val_images = data.splits["train"], data.splits["val"]
    where = choose_image_cache(mode, len(train_images) + len(val_images), preprocess)
    if where == "off":
        paths["images"] = "decoded every epoch"

        def uncached(images: ImageSet, augmenting) -> Dataset:
            return TransformedImages(images, build_transform(preprocess, augmenting, normalize=False), draft_size=preprocess.resize_size)

        return uncached(train_images, config.augment if augment else None), uncached(val_images, None)
    cache_dir = Path(config.run.cache_dir) if config.run.cache_dir else default_cache_dir()
    datasets = []
    for split, images in (("train", train_images), ("val", val_images)):
        try:
            decoded = decode_images(
                images, preprocess, where=where, cache_dir=cache_dir, workers=workers,
                progress=lambda done, total=len(images), split=split: observer.prepare(f"decoding {split} images", done, total),
            )
        except TlcliError as exc:
            if mode != "auto":
                raise
            observer.warning(f"images not cached: {exc}")  # auto never fails a run over a cache
            return _image_datasets(data, preprocess, config, mode="off", augment=augment, workers=workers, observer=observer, paths=paths)
        datasets.append(CachedImages(decoded, images.labels, augment if split == "train" else None))
        paths["images"] = "cached in memory" if where == "memory" else f"cached in {cache_dir}" + (" (reused)" if decoded.reused else "")
    return tuple(datasets)


def _features(
    network: nn.Module, dataset: Dataset, images: ImageSet, *, head: FeatureHead, views: int, augmenting: bool, config: TrainConfig,
    built: BuiltModel, backbone: str | None, device: torch.device, precision: Precision, channels_last: bool, workers: int, observer,
    what: str,
) -> tuple[Features, str]:
    """``backbone``: the digest of the frozen weights when features are kept in --cache-dir."""
    run = config.run
    cache_file = None
    if backbone is not None:
        key = features_key(
            built.arch, backbone, built.preprocess.to_dict(), images.digest(),
            config.augment.__dict__ if augmenting else None, views, run.seed, precision.name, channels_last,
        )
        cache_file = Path(run.cache_dir) / f"features-{key}.pt"
        cached = load_cached(cache_file)
        # Under torchrun, all processes reuse the file or all extract: one alone would wait at the others' collectives.
        if all(gather_objects(cached is not None)):
            return cached, f"reused {cache_file}"
    # Without gradients a batch takes under half the memory, so twice the batch fits; it helps
    # a GPU (on 2 CPU cores, EfficientNet-B0 ran alike at batches of 32 to 128).
    loader = make_loader(dataset, batch_size=2 * run.batch_size, shuffle=False, workers=workers, seed=run.seed, persistent=False)
    features = extract(
        network, f"model.{built.head_name}", loader, head=head.head, views=views, seed=run.seed, device=device, precision=precision, channels_last=channels_last,
        decode_threads=1 if augmenting else available_cores(), progress=lambda done, total: observer.prepare(what, done, total),
    )
    if cache_file is not None:
        try:
            on_main(lambda: save_cached(features, cache_file))  # the others wait for it
        except (OSError, TlcliError) as exc:  # the run goes on from memory
            observer.warning(f"features not saved to {run.cache_dir}: {exc}")
            return features, "in memory"
        return features, f"saved to {cache_file}"
    return features, "in memory"


def _both_features(extractor: nn.Module, train_set: Dataset, val_set: Dataset, data: ImageData, *, views: int, augmenting: bool,
                   common: dict) -> tuple[Features, Features | None, str]:
    train_features, where = _features(extractor, train_set, data.splits["train"], views=views, augmenting=augmenting,
                                      what="caching train features", **common)
    val_features = (_features(extractor, val_set, data.splits["val"], views=1, augmenting=False, what="caching val features", **common)[0]
                    if len(val_set) else None)
    return train_features, val_features, where


def build_inputs(
    data: ImageData, built: BuiltModel, model: nn.Module, config: TrainConfig, *, device: torch.device,
    precision: Precision, channels_last: bool, observer,
) -> TrainingInputs:
    """The loop's model and loaders for ``model`` (``built.model`` on its device)."""
    run = config.run
    if run.feature_views < 1:
        raise TlcliError(f"feature views must be at least 1, got {run.feature_views}")
    workers = default_workers() if run.workers is None else run.workers
    loader_options = dict(batch_size=run.batch_size, workers=workers, seed=run.seed, pin_memory=device.type == "cuda", persistent=not run.deterministic)
    augment = build_augment(config.augment, built.preprocess.channels)
    paths: dict[str, str] = {}

    head, why_not = None, ""
    if run.cache_features != "off":
        try:
            head = feature_head(model, built.head_name, bn_train=config.model.bn_train)
        except NotCacheable as exc:
            if run.cache_features == "on":
                raise TlcliError(f"features cannot be cached: {exc}") from None
            why_not = str(exc)
    # On a GPU, augmentation runs there on whole batches, unless it feeds the feature cache.
    augment_on_device = augment is not None and device.type == "cuda" and head is None
    cache_images = run.cache_images
    if cache_images == "auto" and head is not None and (augment is None or run.feature_views == 1):
        cache_images = "off"  # each image is decoded once anyway
    train_set, val_set = _image_datasets(
        data, built.preprocess, config, mode=cache_images, augment=None if augment_on_device else augment,
        workers=workers, observer=observer, paths=paths,
    )
    network = UInt8Input(model, built.preprocess, augment if augment_on_device else None).to(device)

    if head is not None:
        # More views than epochs would never be drawn.
        views = min(run.feature_views, run.epochs) if augment is not None else 1
        try:
            common = dict(config=config, built=built, device=device, precision=precision, channels_last=channels_last, workers=workers,
                          observer=observer, head=head,
                          backbone=backbone_digest(built.model, built.head_name) if run.cache_dir else None)
            train_features, val_features, where = _both_features(inference_copy(network), train_set, val_set, data, views=views,
                                                                 augmenting=augment is not None, common=common)
        except NotCacheable as exc:
            if run.cache_features == "on":
                raise TlcliError(f"features cannot be cached: {exc}") from None
            head, why_not = None, str(exc)
        else:
            paths["features"] = f"cached, {views} view{'s' if views > 1 else ''} per image, {where}"
            train_loader = make_loader(FeatureSet(train_features, data.splits["train"].labels), shuffle=True, **{**loader_options, "workers": 0})
            val_loader = (
                make_loader(FeatureSet(val_features, data.splits["val"].labels), shuffle=False, **{**loader_options, "workers": 0})
                if val_features is not None else None
            )
            return TrainingInputs(head.to(device), train_loader, val_loader, False, paths, workers)
    paths["features"] = f"computed every step ({why_not})" if why_not else "computed every step"
    train_loader = make_loader(train_set, shuffle=True, **loader_options)
    val_loader = make_loader(val_set, shuffle=False, **loader_options) if len(val_set) else None
    return TrainingInputs(network, train_loader, val_loader, channels_last, paths, workers)


def linear_probe(
    inputs: TrainingInputs, config: TrainConfig, criterion: nn.Module, device: torch.device, *, resumed: dict | None = None,
) -> tuple[LinearProbe, ProbeChoice] | None:
    """Phase 1's head fitted as a linear probe on the cached features, when --head-fit asks for
    it (auto: whenever the features are cached and the head is linear); ``resumed``: the
    checkpoint's record of the probe, whose strength a resumed run keeps."""
    head = inputs.model.head if isinstance(inputs.model, FeatureHead) else None
    if config.optim.head_fit == "epochs" or (config.optim.head_fit == "auto" and not isinstance(head, nn.Linear)):
        return None
    if not isinstance(head, nn.Linear):
        raise TlcliError(f"the linear probe needs cached features and a linear head; features here are {inputs.paths['features']}")
    train = tuple(t.to(device) for t in inputs.train_loader.dataset.matrix())
    val = tuple(t.to(device) for t in inputs.val_loader.dataset.matrix()) if inputs.val_loader is not None else None
    if resumed:
        choice = ProbeChoice(resumed["weight_decay"], resumed["chosen_on"], resumed["candidates"])
    else:
        choice = choose_weight_decay(head, criterion, train, val, monitor=config.run.monitor, given=config.optim.weight_decay or None)
        if choice.fitted is not None:
            head.load_state_dict(choice.fitted)
    return LinearProbe(head, make_lbfgs(head), criterion, train, choice.weight_decay), choice
