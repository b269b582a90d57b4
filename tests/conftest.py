"""Shared test helpers: run the CLI in-process, and write real image files."""

from __future__ import annotations

import json
import shutil
import tempfile
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tlcli.cli import main


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture(scope="module")
def _one_thread():
    """One intra-op thread: on a small, shared machine two threads spin against each other."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# Where tlcli, torch and Hugging Face look for the user's runs, data and downloaded weights.
_USER = pytest.StashKey[tuple]()
_USER_LOCATIONS = ("TLCLI_CHECKPOINTS_DIR", "TLCLI_DATA_DIR", "TLCLI_CACHE_DIR", "TORCH_HOME", "HF_HOME", "XDG_CACHE_HOME")


def pytest_configure(config):
    """Every test, and every process a test starts, runs in a scratch folder with its own
    checkpoints, data and caches, and without the user's TLCLI_* or Hugging Face settings: a
    suite run after ``make demo`` must neither see the demo's runs nor touch them. Done here,
    before any test module is imported, because huggingface_hub (imported by ``datasets``) reads
    HF_HOME once, at import. ``isolated`` then gives a test folders of its own."""
    home = Path(tempfile.mkdtemp(prefix="tlcli-tests-user-"))
    config.stash[_USER] = (dict(os.environ), os.getcwd(), home)
    for name in [name for name in os.environ if name.startswith(("TLCLI_", "HF_"))]:
        del os.environ[name]
    os.environ.update({name: str(home / name.lower()) for name in _USER_LOCATIONS})
    os.chdir(home)


def pytest_unconfigure(config):
    saved, cwd, home = config.stash[_USER]
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(saved)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def checkpoints_dir(tmp_path) -> Path:
    """Where ``isolated`` points TLCLI_CHECKPOINTS_DIR; a module overrides it to share a trained run."""
    return tmp_path / "checkpoints"


@pytest.fixture
def isolated(tmp_path, monkeypatch, checkpoints_dir):
    """Keep a test off the user's folders: run in tmp_path, with its own checkpoints, data and cache.

    Modules opt in for every test with ``pytestmark = pytest.mark.usefixtures("isolated")``.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TLCLI_CHECKPOINTS_DIR", str(checkpoints_dir))
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TLCLI_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def run_cli(capsys):
    """Call ``tlcli ARGS`` in this process; returns exit code, stdout and stderr."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


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


@pytest.fixture
def tiny(tmp_path) -> Path:
    """Twelve 8x8 images of two classes: an epoch of an mlp takes milliseconds."""
    return make_class_folder(tmp_path / "tiny", {"a": 6, "b": 6}, size=(8, 8))


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
