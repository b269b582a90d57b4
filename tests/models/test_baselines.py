"""``tlcli.models.baselines``: the reports' from-scratch networks, SimpleCNN and MLP, their layer
layout, parameter counts, dropout placement and output shapes."""

from __future__ import annotations

import torch
from torch import nn

from tlcli.models.baselines import MLP, SimpleCNN


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _layer_types(model: MLP) -> list[type]:
    return [type(layer) for layer in model.layers]


def test_simple_cnn_has_the_cifar10_reports_parameter_count():
    # The count the docstring promises for 3x32x32 -> 10.
    assert _parameters(SimpleCNN(10)) == 2_122_186


def test_simple_cnn_parameters_follow_its_input_size_and_channels():
    model = SimpleCNN(4, in_channels=1, input_size=16)
    convolutions = (1 * 9 * 32 + 32) + (32 * 9 * 64 + 64)
    # Two 2x2 poolings: 16 -> 4, so the flattened features are 64 * 4 * 4.
    dense = (64 * 4 * 4 * 512 + 512) + (512 * 4 + 4)
    assert _parameters(model) == convolutions + dense
    assert model(torch.zeros(3, 1, 16, 16)).shape == (3, 4)


def test_simple_cnn_adds_dropout_before_its_last_layer_only_when_asked():
    assert not any(isinstance(m, nn.Dropout) for m in SimpleCNN(10).modules())
    classifier = SimpleCNN(10, dropout=0.4).classifier
    assert isinstance(classifier[-2], nn.Dropout) and classifier[-2].p == 0.4
    assert isinstance(classifier[-1], nn.Linear) and classifier[-1].out_features == 10


def test_mlp_is_the_mnist_reports_784_128_dropout_64_10_network():
    model = MLP()
    assert _layer_types(model) == [nn.Flatten, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Linear]
    assert [(m.in_features, m.out_features) for m in model.layers if isinstance(m, nn.Linear)] == [(784, 128), (128, 64), (64, 10)]
    assert model.layers[3].p == 0.2
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_mlp_puts_dropout_after_every_hidden_layer_but_the_last():
    model = MLP(3, hidden=(32, 16, 8), hidden_dropout=0.1)
    dropouts = [i for i, layer in enumerate(model.layers) if isinstance(layer, nn.Dropout)]
    # Each follows a hidden layer's ReLU; none separates the last hidden layer from the head.
    assert [type(model.layers[i - 1]) for i in dropouts] == [nn.ReLU, nn.ReLU]
    assert len(dropouts) == 2
    assert isinstance(model.layers[-1], nn.Linear) and isinstance(model.layers[-2], nn.ReLU)


def test_mlp_without_hidden_dropout_and_with_a_dropout_before_the_head():
    plain = MLP(3, hidden=(32, 16), hidden_dropout=0.0)
    assert not any(isinstance(layer, nn.Dropout) for layer in plain.layers)
    with_head_dropout = MLP(3, hidden=(32, 16), hidden_dropout=0.0, dropout=0.5)
    assert isinstance(with_head_dropout.layers[-2], nn.Dropout) and with_head_dropout.layers[-2].p == 0.5


def test_mlp_flattens_every_channel_of_its_input():
    model = MLP(2, in_channels=3, input_size=8, hidden=(16,))
    assert model.layers[1].in_features == 3 * 8 * 8
    assert model(torch.rand(4, 3, 8, 8)).shape == (4, 2)


def test_dropout_randomises_training_outputs_only():
    torch.manual_seed(0)
    model = MLP(2, input_size=8, hidden=(64, 64), hidden_dropout=0.5)
    images = torch.rand(4, 1, 8, 8)
    model.eval()
    assert torch.equal(model(images), model(images))
    model.train()
    assert not torch.equal(model(images), model(images))
