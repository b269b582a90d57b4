"""A model that takes uint8 pixels: normalisation (and, on a GPU, augmentation) on the device.

Exported models take uint8 so that clients skip the float maths; the decoded-image cache feeds
uint8 batches, a quarter of the bytes to copy to the device, and normalises there.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tlcli.data.transforms import Preprocess


class UInt8Input(nn.Module):
    """Takes uint8 (N, C, H, W) already resized and cropped; normalises inside the graph.

    ``augment`` (one image, uint8 in and out) runs per image in training mode only, where the
    batch already is: on the GPU when training on one.
    """

    def __init__(self, model: nn.Module, preprocess: Preprocess, augment: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.model = model
        self.augment = augment
        self.register_buffer("mean", torch.tensor(preprocess.mean).view(1, -1, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(preprocess.std).view(1, -1, 1, 1) * 255.0)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.augment is not None and self.training:
            pixels = torch.stack([self.augment(image) for image in pixels])
        return self.model((pixels.float() - self.mean) / self.std)
