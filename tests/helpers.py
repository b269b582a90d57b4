"""Helpers the tests share: real image files and folders, weights placed where the real
loading code looks for them, a tiny run's options, and a run trained in-process."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tlcli.core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from tlcli.engine.observer import Observer
from tlcli.run.result import RunResult
from tlcli.run.story import Run


def train(config: TrainConfig, *, observer: Observer | None = None) -> RunResult:
    """One run trained in this process, as ``tlcli train`` trains it."""
    return Run(config).execute(observer)


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


def write_image(path: Path, *, size=(16, 16), mode="RGB", color=None, fmt=None, seed=0, **save_kwargs) -> Path:
    """A real image file with random (seeded) pixels, or a flat colour."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if color is not None:
        image = Image.new(mode, size, color)
    else:
        channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode] if mode in ("RGB", "RGBA", "L") else 3
        pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
        image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode if mode in ("RGB", "RGBA", "L") else "RGB")
        if mode not in ("RGB", "RGBA", "L"):
            image = image.convert(mode)
    image.save(path, format=fmt, **save_kwargs)
    return path


def make_class_folder(root: Path, classes: dict[str, int], *, size=(16, 16), seed: int = 0) -> Path:
    """root/<class>/<i>.png with the given number of images per class, each different; a folder
    made with another ``seed`` (a multiple of 10,000) shares no image with this one."""
    for class_index, (name, count) in enumerate(classes.items()):
        for i in range(count):
            write_image(root / name / f"{i}.png", size=size, seed=seed + class_index * 1000 + i)
    return root


def tiny_run_options(data: Path, out: Path, epochs: int) -> list[str]:
    """train options for ``tiny``: an mlp, deterministic, one loader process, 4 images for val."""
    return ["--data", str(data), "--arch", "mlp", "--input-size", "8", "--val-split", "0.34", "--test-split", "0", "--workers", "0",
            "--deterministic", "--epochs", str(epochs), "--out", str(out)]


def place_torchvision_weights(arch: str) -> dict[str, torch.Tensor]:
    """Write a state dict where torch.hub looks for ``arch``'s ImageNet weights ($TORCH_HOME)."""
    from torchvision import models

    weights = models.get_model_weights(arch).DEFAULT
    reference = models.get_model(arch, weights=None).state_dict()
    reference = {k: (v + 0.5 if v.is_floating_point() else v) for k, v in reference.items()}
    target = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(reference, target)
    return reference


def place_timm_weights(repo: str, model: str) -> tuple[Path, dict[str, torch.Tensor]]:
    """Write ``model``'s weights into the Hugging Face cache of this process as repository ``repo``
    (timm/<model>.<tag>), laid out as the offline error tells users to: a snapshot named after the
    branch and a refs file naming it. Returns the repository's folder, for the test to remove."""
    import timm
    from huggingface_hub import constants
    from safetensors.torch import save_file

    # huggingface_hub reads HF_HOME once, at import: make sure that was the scratch one.
    assert Path(constants.HF_HUB_CACHE).is_relative_to(os.environ["HF_HOME"])
    state = {k: v + 0.25 if v.is_floating_point() else v for k, v in timm.create_model(model).state_dict().items()}
    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    (folder / "snapshots" / "main").mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("main")
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "snapshots" / "main" / "model.safetensors"))
    return folder, state


@dataclass
class TinyRun:
    base: Path
    folder: Path  # the images: a/0.png ... b/5.png
    checkpoints: Path
    run_dir: Path

    @property
    def images(self) -> list[Path]:
        return sorted(self.folder.rglob("*.png"))


@contextlib.contextmanager
def working_in(base: Path, *, checkpoints: Path | None = None) -> Iterator[pytest.MonkeyPatch]:
    """For a fixture wider than one test (``isolated`` is per test): work in ``base``, with tlcli's
    checkpoints (``base/checkpoints`` unless given), data and cache folders there."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(base)
        patch.setenv("TLCLI_CHECKPOINTS_DIR", str(checkpoints or base / "checkpoints"))
        patch.setenv("TLCLI_DATA_DIR", str(base / "data"))
        patch.setenv("TLCLI_CACHE_DIR", str(base / "cache"))
        yield patch


def train_tiny_run(base: Path) -> TinyRun:
    """A one-epoch mlp on twelve 8x8 images of classes a and b, trained under ``base`` with its
    own checkpoints and cache folders (``tiny_run`` in conftest shares one per session)."""
    folder = make_class_folder(base / "tiny", {"a": 6, "b": 6}, size=(8, 8))
    checkpoints = base / "checkpoints"
    with working_in(base, checkpoints=checkpoints):
        config = TrainConfig(data=DataConfig(str(folder), val_split=0.34, test_split=0.0),
                             model=ModelConfig(arch="mlp", weights="none", input_size=8),
                             run=RunConfig(epochs=1, out=str(checkpoints / "tiny-run"), workers=0))
        run_dir = Path(train(config).run_dir)
    return TinyRun(base, folder, checkpoints, run_dir)
