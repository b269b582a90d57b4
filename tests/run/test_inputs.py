"""``tlcli.run.inputs`` on the ``tiny`` folder: ``wants_channels_last``'s automatic choice,
``build_inputs`` serving uint8 images (cached or decoded each epoch) or cached features equal to
the frozen network's own, and ``linear_probe`` fitting the head only where --head-fit allows."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from tlcli.core.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from tlcli.core.errors import TlcliError
from tlcli.data.sources import load_data
from tlcli.engine.device import resolve_precision
from tlcli.engine.observer import Observer
from tlcli.engine.probe import LinearProbe
from tlcli.models.baselines import MLP, SimpleCNN
from tlcli.models.inputs import UInt8Input
from tlcli.models.registry import build_model
from tlcli.run.features import FeatureHead
from tlcli.run.inputs import build_inputs, linear_probe, wants_channels_last

pytestmark = pytest.mark.usefixtures("_one_thread", "isolated")
CPU = torch.device("cpu")
# A one-hidden-layer mlp (no hidden dropout) with its hidden layer frozen: a fixed feature extractor.
FROZEN = ModelConfig(arch="mlp", weights="none", input_size=8, hidden=(16,), freeze="backbone")


def _config(tiny, model: ModelConfig | None = None, **run) -> TrainConfig:
    return TrainConfig(data=DataConfig(source=str(tiny), val_split=0.34, test_split=0.0),
                       model=model or ModelConfig(arch="mlp", weights="none", input_size=8),
                       run=RunConfig(device="cpu", workers=0, epochs=2, **run))


def _inputs(config: TrainConfig):
    data = load_data(config.data)
    built = build_model(config.model, num_classes=data.num_classes)
    inputs = build_inputs(data, built, built.model, config, device=CPU, precision=resolve_precision("off", CPU),
                          channels_last=False, observer=Observer())
    return data, built, inputs


def test_channels_last_is_on_for_convolutional_networks_unless_set():
    assert wants_channels_last(None, SimpleCNN(2, input_size=8))
    assert not wants_channels_last(None, MLP(2, input_size=8))
    assert wants_channels_last(True, MLP(2, input_size=8))
    assert not wants_channels_last(False, SimpleCNN(2, input_size=8))


def test_a_network_training_before_its_head_gets_uint8_image_batches(tiny):
    data, built, inputs = _inputs(_config(tiny))
    assert isinstance(inputs.model, UInt8Input) and inputs.model.model is built.model
    assert inputs.paths["features"].startswith("computed every step (parameters before the head train")
    assert inputs.paths["images"] == "cached in memory"
    batch = next(iter(inputs.train_loader))
    assert batch.images.dtype == torch.uint8 and batch.images.shape == (len(data.splits["train"]), 1, 8, 8)
    assert sorted(batch.labels.tolist()) == sorted(data.splits["train"].labels)
    assert sum(len(b.labels) for b in inputs.val_loader) == len(data.splits["val"]) == 4
    assert inputs.model(batch.images).shape == (8, 2)


def test_images_decoded_every_epoch_are_the_pixels_the_cache_serves(tiny):
    _, _, cached = _inputs(_config(tiny, cache_images="memory"))
    _, _, decoded = _inputs(_config(tiny, cache_images="off"))
    assert decoded.paths["images"] == "decoded every epoch"
    for index in range(len(cached.train_loader.dataset)):
        assert torch.equal(cached.train_loader.dataset[index][0], decoded.train_loader.dataset[index][0])


def test_no_validation_split_gives_no_val_loader(tiny):
    config = _config(tiny)
    _, _, inputs = _inputs(replace(config, data=replace(config.data, val_split=0.0)))
    assert inputs.val_loader is None
    assert len(inputs.train_loader.dataset) == 12


def test_asking_for_a_feature_cache_the_network_forbids_is_an_error(tiny):
    with pytest.raises(TlcliError, match="features cannot be cached: parameters before the head train"):
        _inputs(_config(tiny, cache_features="on"))


def test_fewer_than_one_feature_view_is_an_error(tiny):
    with pytest.raises(TlcliError, match="feature views must be at least 1"):
        _inputs(_config(tiny, model=FROZEN, feature_views=0))


def test_cached_features_are_what_the_frozen_layers_compute(tiny):
    data, built, inputs = _inputs(_config(tiny, model=FROZEN))
    assert isinstance(inputs.model, FeatureHead) and inputs.model.head is built.model.layers[3]
    assert inputs.paths["features"] == "cached, 1 view per image, in memory"
    assert not inputs.channels_last
    features, labels = inputs.train_loader.dataset.matrix()
    assert features.shape == (8, 16) and labels.tolist() == data.splits["train"].labels
    # The same images through the whole network, caught where they enter the head.
    _, _, images = _inputs(_config(tiny, model=FROZEN, cache_features="off"))
    network = UInt8Input(built.model, built.preprocess).eval()
    caught = []
    built.model.layers[3].register_forward_hook(lambda module, given, output: caught.append(given[0]))
    with torch.no_grad():
        network(torch.stack([images.train_loader.dataset[i][0] for i in range(8)]))
    assert torch.allclose(features, caught[0], atol=1e-5)


def test_augmented_features_cache_a_view_per_epoch_at_most(tiny):
    config = replace(_config(tiny, model=FROZEN, feature_views=4), augment=replace(TrainConfig().augment, hflip=True))
    _, _, inputs = _inputs(config)
    assert inputs.paths["features"] == "cached, 2 views per image, in memory"
    assert inputs.train_loader.dataset.features.values.shape == (8, 2, 16)


def test_features_kept_in_a_cache_dir_are_reused_by_the_next_run(tiny, tmp_path):
    config = _config(tiny, model=FROZEN, cache_dir=str(tmp_path / "cache"))
    _, _, first = _inputs(config)
    assert first.paths["features"].startswith("cached, 1 view per image, saved to ")
    _, _, second = _inputs(config)
    assert second.paths["features"].startswith("cached, 1 view per image, reused ")
    assert torch.equal(first.train_loader.dataset.features.values, second.train_loader.dataset.features.values)


def _probe(config: TrainConfig, inputs, **keywords):
    return linear_probe(inputs, config, nn.CrossEntropyLoss(), CPU, **keywords)


def test_the_linear_probe_fits_a_cached_linear_head_by_default(tiny):
    config = _config(tiny, model=FROZEN)
    _, built, inputs = _inputs(config)
    probe, choice = _probe(config, inputs)
    assert isinstance(probe, LinearProbe) and probe.head is built.model.layers[3]
    assert choice.chosen_on == "val_loss" and len(choice.candidates) == 9
    # The head starts the epochs from the chosen candidate.
    assert all(torch.equal(probe.head.state_dict()[name], tensor) for name, tensor in choice.fitted.items())
    assert probe.x.shape == (8, 16)


def test_a_given_weight_decay_and_a_resumed_choice_are_kept(tiny):
    config = replace(_config(tiny, model=FROZEN), optim=OptimConfig(weight_decay=0.02))
    _, _, inputs = _inputs(config)
    assert _probe(config, inputs)[1].chosen_on == "given"
    resumed = {"weight_decay": 0.005, "chosen_on": "val_acc", "candidates": [{"weight_decay": 0.005}]}
    before = {name: tensor.clone() for name, tensor in inputs.model.head.state_dict().items()}
    probe, choice = _probe(config, inputs, resumed=resumed)
    assert (choice.weight_decay, choice.chosen_on, probe.weight_decay) == (0.005, "val_acc", 0.005)
    assert all(torch.equal(inputs.model.head.state_dict()[name], tensor) for name, tensor in before.items())


def test_no_probe_for_head_fit_epochs_or_image_inputs_and_an_error_where_it_is_demanded(tiny):
    cached = _config(tiny, model=FROZEN)
    _, _, inputs = _inputs(cached)
    assert _probe(replace(cached, optim=OptimConfig(head_fit="epochs")), inputs) is None
    images = _config(tiny)
    _, _, image_inputs = _inputs(images)
    assert _probe(images, image_inputs) is None
    with pytest.raises(TlcliError, match="the linear probe needs cached features and a linear head; features here are computed"):
        _probe(replace(images, optim=OptimConfig(head_fit="probe")), image_inputs)
