"""``tlcli.run.build``: ``check_before_data`` refusing what needs no data to refuse, before the
data is looked at, and ``prepare`` on the ``tiny`` folder giving a Trainer whose parts fit
together: model, loaders, loss, optimiser and schedule, or the linear probe in their place."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tlcli.core.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from tlcli.core.errors import ConfigError, DataError, TlcliError, WeightsError
from tlcli.engine.loop import train_one_epoch
from tlcli.engine.probe import ProbeChoice
from tlcli.engine.state import Progress
from tlcli.models.inputs import UInt8Input
from tlcli.run.build import check_before_data, prepare
from tlcli.run.features import FeatureHead

pytestmark = pytest.mark.usefixtures("_one_thread", "isolated")
MLP = ModelConfig(arch="mlp", weights="none", input_size=8)
# No hidden dropout, hidden layer frozen: its features can be cached and the head fitted as a probe.
FROZEN_MLP = ModelConfig(arch="mlp", weights="none", input_size=8, hidden=(16,), freeze="backbone")


def _config(data, *, model: ModelConfig = MLP, optim: OptimConfig = OptimConfig(), val_split: float = 0.34, **run) -> TrainConfig:
    return TrainConfig(data=DataConfig(source=str(data), val_split=val_split, test_split=0.0), model=model, optim=optim,
                       run=RunConfig(device="cpu", workers=0, epochs=2, **run))


def test_a_sound_configuration_passes(tiny):
    check_before_data(_config(tiny))
    check_before_data(_config(tiny, model=FROZEN_MLP, cache_features="on", optim=OptimConfig(head_fit="probe")))


def test_a_bad_value_is_refused_before_the_missing_data_is_noticed(tmp_path):
    nowhere = tmp_path / "no-such-folder"
    with pytest.raises(ConfigError, match="-1 is not > 0"):
        check_before_data(_config(nowhere, optim=OptimConfig(lr=-1.0)))
    with pytest.raises(ConfigError, match="leave nothing for training"):
        check_before_data(replace(_config(nowhere), data=DataConfig(source=str(nowhere), val_split=0.6, test_split=0.5)))
    with pytest.raises(DataError):
        check_before_data(_config(nowhere))


def test_a_precision_or_device_this_machine_lacks_is_refused(tiny):
    with pytest.raises(TlcliError, match="fp16 mixed precision is for GPUs"):
        check_before_data(_config(tiny, amp="fp16"))
    if not torch.cuda.is_available():
        with pytest.raises(TlcliError, match="CUDA is not available"):
            check_before_data(replace(_config(tiny), run=RunConfig(device="cuda")))


def test_a_weights_file_that_is_not_there_is_refused(tiny, tmp_path):
    with pytest.raises(WeightsError, match="weights file .*missing.pt does not exist"):
        check_before_data(_config(tiny, model=replace(MLP, weights=str(tmp_path / "missing.pt"))))


def test_what_the_networks_structure_rules_out_is_a_config_error(tiny):
    with pytest.raises(ConfigError, match="'blocks:9': this network has 4 stages"):
        check_before_data(_config(tiny, model=ModelConfig(arch="resnet18", weights="none", freeze="blocks:9")))
    with pytest.raises(ConfigError, match="--head-fit probe fits the head on cached features, which --cache-features off turns off"):
        check_before_data(_config(tiny, model=FROZEN_MLP, cache_features="off", optim=OptimConfig(head_fit="probe")))
    with pytest.raises(ConfigError, match="--head-fit probe needs a frozen backbone in inference mode, but parameters before the head train"):
        check_before_data(_config(tiny, optim=OptimConfig(head_fit="probe")))
    squeezenet = ModelConfig(arch="squeezenet1_1", weights="none", freeze="backbone")
    with pytest.raises(ConfigError, match="--head-fit probe needs a linear head; squeezenet1_1's is a Conv2d"):
        check_before_data(_config(tiny, model=squeezenet, optim=OptimConfig(head_fit="probe")))


def test_missing_data_is_said_before_weights_that_cannot_be_had(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # an offline machine: no download to wait for
    imagenet = ModelConfig(arch="squeezenet1_1", weights="imagenet")
    with pytest.raises(DataError):
        check_before_data(_config(tmp_path / "no-such-folder", model=imagenet))
    with pytest.raises(WeightsError, match="pretrained weights for squeezenet1_1 are not cached"):
        check_before_data(_config(tiny, model=imagenet))


def test_prepare_gives_a_trainer_whose_parts_fit_together(tiny):
    prepared = prepare(_config(tiny))
    trainer, built = prepared.trainer, prepared.built
    assert isinstance(trainer.model, UInt8Input) and trainer.model.model is built.model
    assert trainer.eval_model is trainer.model
    assert prepared.inputs.train_loader is trainer.train_loader and prepared.inputs.val_loader is trainer.val_loader
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in built.model.parameters() if p.requires_grad} != set()
    assert trainer.scheduler is not None and trainer.full_batch_epoch is None
    assert (trainer.device, trainer.precision.name, prepared.progress) == (torch.device("cpu"), "off", Progress())
    batch = next(iter(trainer.train_loader))
    assert trainer.model(batch.images).shape == (len(batch.labels), prepared.data.num_classes)
    assert trainer.criterion(trainer.model(batch.images), batch.labels).ndim == 0


def test_a_prepared_trainer_trains(tiny):
    prepared = prepare(_config(tiny))
    before = [p.detach().clone() for p in prepared.built.model.parameters()]
    epoch = train_one_epoch(prepared.trainer)
    assert epoch.images == len(prepared.data.splits["train"]) == 8
    assert any(not torch.equal(b, p) for b, p in zip(before, prepared.built.model.parameters()))


def test_the_resolved_configuration_names_every_automatic_choice(tiny):
    prepared = prepare(_config(tiny))
    assert prepared.config.optim.lr == 1e-3  # the whole network trains: the default rate
    assert prepared.method == "adam, lr 0.001, cosine schedule"
    resolved = prepared.resolved_config()
    assert (resolved.model.num_classes, resolved.model.weights, resolved.model.freeze) == (2, "none", "none")
    assert (resolved.model.input_size, resolved.run.device, resolved.run.amp, resolved.run.workers) == (8, "cpu", "off", 0)
    assert resolved.run.channels_last is False  # an mlp has no convolution to speed up


def test_a_frozen_backbone_gets_the_linear_probe_in_place_of_the_optimiser(tiny):
    prepared = prepare(_config(tiny, model=FROZEN_MLP, optim=OptimConfig(lr=0.05)))
    trainer = prepared.trainer
    assert isinstance(trainer.model, FeatureHead) and trainer.model.head is prepared.built.model.layers[3]
    assert isinstance(prepared.head_fit, ProbeChoice) and prepared.head_fit.chosen_on == "val_loss"
    assert isinstance(trainer.optimizer, torch.optim.LBFGS) and trainer.scheduler is None
    assert trainer.method == "lbfgs probe" and prepared.method.startswith("linear probe on the cached features")
    assert any("--lr 0.05" in note and "do not apply" in note for note in prepared.notes)
    assert trainer.full_batch_epoch().images == 8


def test_a_class_count_other_than_the_datas_is_refused(tiny):
    with pytest.raises(ConfigError, match="--num-classes 3 does not match the data's 2 classes"):
        prepare(_config(tiny, model=replace(MLP, num_classes=3)))


def test_without_validation_images_the_notes_say_what_stands_in(tiny):
    prepared = prepare(_config(tiny, val_split=0.0))
    assert prepared.trainer.val_loader is None
    assert any(note.startswith("no validation images: best.pt and early stopping follow the training loss") for note in prepared.notes)
