"""The reports' from-scratch baselines."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


class SimpleCNN(nn.Module):
    """The CIFAR-10 report's network: two 3x3 "same" convolutions with pooling, then 512 -> classes.

    At 3x32x32 -> 10 it has exactly 2,122,186 parameters.
    """

    def __init__(self, num_classes: int = 10, *, in_channels: int = 3, input_size: int = 32, dropout: float = 0.0):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        side = input_size // 4
        head: list[nn.Module] = [nn.Dropout(dropout)] if dropout else []
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * side * side, 512), nn.ReLU(inplace=True), *head, nn.Linear(512, num_classes)
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """The MNIST report's multilayer perceptron on the flattened image (784-128-ReLU-Dropout-64-ReLU-10).

    Dropout follows every hidden layer but the last; ``dropout`` before the head is optional.
    """

    def __init__(
        self,
        num_classes: int = 10,
        *,
        in_channels: int = 1,
        input_size: int = 28,
        hidden: Sequence[int] = (128, 64),
        hidden_dropout: float = 0.2,
        dropout: float = 0.0,
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_channels * input_size * input_size
        for position, size in enumerate(hidden):
            layers += [nn.Linear(width, size), nn.ReLU(inplace=True)]
            if position < len(hidden) - 1 and hidden_dropout:
                layers.append(nn.Dropout(hidden_dropout))
            width = size
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)
