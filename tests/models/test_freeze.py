"""Freeze policies decide what trains; frozen parts run in inference mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tlcli.core.config import ModelConfig
from tlcli.core.errors import ConfigError, ModelError
from tlcli.models.freeze import apply_freeze, backbone_stages, count_parameters, set_train_mode
from tlcli.models.registry import build_model


def _build(arch: str, freeze: str | None = None, **overrides):
    return build_model(ModelConfig(arch=arch, freeze=freeze, **overrides), num_classes=3, load_weights=False)


def _trainable(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_pretrained_models_freeze_the_backbone_by_default_and_scratch_models_nothing():
    pretrained = _build("resnet18")
    assert pretrained.freeze_policy == "backbone"
    assert _trainable(pretrained.model) == {"fc.weight", "fc.bias"}
    scratch = _build("resnet18", weights="none")
    assert scratch.freeze_policy == "none" and not scratch.frozen


def test_all_and_none():
    assert not _trainable(_build("resnet18", "all").model)
    model = _build("resnet18", "none").model
    assert _trainable(model) == {name for name, _ in model.named_parameters()}


def test_resnet_blocks_are_the_stem_plus_layer1_to_layer4():
    built = _build("resnet18", "none")
    stages = backbone_stages(built.model, built.head_name)
    assert len(stages) == 4
    assert stages[0][0] == "conv1.weight" and "bn1.weight" in stages[0] and any(n.startswith("layer1.") for n in stages[0])
    for index, stage in enumerate(stages[1:], start=2):
        assert all(name.startswith(f"layer{index}.") for name in stage)
    counts = []
    for blocks in range(5):
        model = _build("resnet18", f"blocks:{blocks}").model
        trainable = _trainable(model)
        frozen_layers = {f"layer{i}" for i in range(1, blocks + 1)}
        assert all(not n.startswith(tuple(frozen_layers)) for n in trainable)
        assert ("conv1.weight" in trainable) == (blocks == 0)
        assert {"fc.weight", "fc.bias"} <= trainable
        counts.append(count_parameters(model).trainable)
    assert counts == sorted(counts, reverse=True) and len(set(counts)) == 5


def test_blocks_beyond_the_network_is_an_error_naming_the_range():
    with pytest.raises(ModelError, match="0 to 4"):
        _build("resnet18", "blocks:5")


def test_efficientnet_blocks_follow_its_feature_stages():
    built = _build("efficientnet_b0", "blocks:9")
    assert len(backbone_stages(built.model, built.head_name)) == 9
    assert _trainable(built.model) == {"classifier.1.weight", "classifier.1.bias"}


def test_last_n_trains_the_last_n_parameterised_layers_and_the_head():
    built = _build("efficientnet_b0", "last:2")
    owners = {name.rpartition(".")[0] for name in _trainable(built.model)}
    # features.8 is Conv + BatchNorm: the last two parameterised layers before the head.
    assert owners == {"features.8.0", "features.8.1", "classifier.1"}
    assert _trainable(_build("efficientnet_b0", "last:0").model) == {"classifier.1.weight", "classifier.1.bias"}


def test_regex_freezes_matching_parameter_names():
    model = _build("resnet18", r"re:^(conv1|bn1|layer1)\.").model
    trainable = _trainable(model)
    assert not any(n.startswith(("conv1", "bn1", "layer1.")) for n in trainable)
    assert "layer2.0.conv1.weight" in trainable


@pytest.mark.parametrize("policy", ["frozen", "blocks:x", "last:", "re:("])
def test_bad_policies_are_clear_errors(policy):
    with pytest.raises(ConfigError):  # a bad value: exit 2 from the command line
        _build("resnet18", policy)


def test_frozen_batchnorm_stays_in_eval_mode_and_keeps_its_statistics():
    built = _build("resnet18", "backbone")
    model = built.model
    set_train_mode(model)
    assert not model.bn1.training and not model.layer4[1].bn2.training
    assert model.fc.training
    before = model.bn1.running_mean.clone()
    model(torch.randn(4, 3, 64, 64) * 5 + 3)
    assert torch.equal(model.bn1.running_mean, before)

    set_train_mode(model, bn_train=True)
    assert model.bn1.training
    model(torch.randn(4, 3, 64, 64) * 5 + 3)
    assert not torch.equal(model.bn1.running_mean, before)


def test_partly_frozen_network_trains_only_the_unfrozen_blocks_bn():
    model = _build("resnet18", "blocks:2").model
    set_train_mode(model)
    assert not model.layer2[0].bn1.training and model.layer3[0].bn1.training


def test_apply_freeze_returns_the_frozen_names_and_counts_add_up():
    built = _build("resnet18", "none")
    frozen = apply_freeze(built.model, "backbone", built.head_name)
    counts = count_parameters(built.model)
    assert len(frozen) == len(list(built.model.parameters())) - 2
    assert counts.trainable == 512 * 3 + 3 and counts.frozen == counts.total - counts.trainable
