"""Test-time augmentation: a prediction averaged over a few views of each image that keep any
label (the image itself, a slight zoom, small rotations either way; no flips: a mirrored digit or
text changes class), the same views as phase 2's default training augmentation, only milder.

The views are made on whole batches with ``affine_grid``/``grid_sample``, on float or uint8
pixels alike, before or after normalisation (an affine map of the plane commutes with the
per-channel normalisation, and the corners a rotation uncovers repeat the nearest edge pixel, so
the views of uint8 pixels and of normalised ones are the same up to rounding).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

# (scale, degrees): the identity first.
VIEWS = ((1.0, 0.0), (1.1, 0.0), (1.0, 8.0), (1.0, -8.0))


def view(images: torch.Tensor, *, scale: float, degrees: float) -> torch.Tensor:
    """``images`` (N, C, H, W) zoomed by ``scale`` and rotated by ``degrees`` about the centre."""
    if scale == 1.0 and degrees == 0.0:
        return images
    angle = math.radians(degrees)
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    pixels = images.float()
    theta = pixels.new_tensor([[cos, -sin, 0.0], [sin, cos, 0.0]]).expand(len(images), 2, 3)
    grid = nn.functional.affine_grid(theta, list(pixels.shape), align_corners=False)
    moved = nn.functional.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if images.dtype == torch.uint8:
        return moved.round_().clamp_(0, 255).to(torch.uint8)
    return moved.to(images.dtype)


def averaged_probabilities(predict: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """The mean over VIEWS of ``predict(view)`` (class probabilities of a batch)."""
    total = None
    for scale, degrees in VIEWS:
        probabilities = predict(view(images, scale=scale, degrees=degrees))
        total = probabilities if total is None else total + probabilities
    return total / len(VIEWS)


class Averaged(nn.Module):
    """A classifier whose output is the log of its probabilities averaged over VIEWS: softmax of
    it is the averaged prediction, and cross-entropy on it is that prediction's log loss."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        averaged = averaged_probabilities(lambda batch: self.model(batch).float().softmax(1), images)
        return averaged.clamp_min(torch.finfo(averaged.dtype).tiny).log()
