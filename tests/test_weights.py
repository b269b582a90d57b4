"""Pretrained weights load through the ecosystems' real caches; files load safely."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tlcli.config import ModelConfig
from tlcli.errors import WeightsError
from tlcli.models.registry import build_model
from tlcli.models.weights import torchvision_cache_file


def _place_torchvision_weights(arch: str) -> dict[str, torch.Tensor]:
    """Write a state dict where torch.hub looks for ``arch``'s ImageNet weights."""
    from torchvision import models

    weights = models.get_model_weights(arch).DEFAULT
    reference = models.get_model(arch, weights=None).state_dict()
    reference = {k: (v + 0.5 if v.is_floating_point() else v) for k, v in reference.items()}
    target = torchvision_cache_file(weights.url)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(reference, target)
    return reference


def test_imagenet_weights_are_read_from_the_torch_home_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    reference = _place_torchvision_weights("squeezenet1_1")
    assert torchvision_cache_file("https://x/squeezenet1_1-b8a52dc0.pth").is_relative_to(tmp_path)
    built = build_model(ModelConfig(arch="squeezenet1_1"), num_classes=4)
    assert built.weights == "torchvision:squeezenet1_1.IMAGENET1K_V1"
    state = built.model.state_dict()
    assert torch.equal(state["features.0.weight"], reference["features.0.weight"])
    assert state["classifier.1.weight"].shape == (4, 512, 1, 1)
    assert built.freeze_policy == "backbone"


def test_missing_cached_weights_name_the_expected_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(WeightsError) as caught:
        build_model(ModelConfig(arch="squeezenet1_1"), num_classes=4)
    message = str(caught.value)
    expected = tmp_path / "empty" / "hub" / "checkpoints" / "squeezenet1_1-b8a52dc0.pth"
    assert str(expected) in message and "--weights none" in message


def test_a_corrupt_cached_file_says_to_delete_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    target = tmp_path / "hub" / "checkpoints" / "squeezenet1_1-b8a52dc0.pth"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(WeightsError, match="delete it"):
        build_model(ModelConfig(arch="squeezenet1_1"), num_classes=4)


def test_weights_file_with_another_head_size_loads_the_backbone_and_reports_the_head(tmp_path):
    source = build_model(ModelConfig(arch="resnet18", weights="none"), num_classes=10, load_weights=False)
    path = tmp_path / "resnet18-10.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.model.state_dict().items()}}, path)
    built = build_model(ModelConfig(arch="resnet18", weights=str(path)), num_classes=3)
    assert torch.equal(built.model.conv1.weight, source.model.conv1.weight)
    assert built.model.fc.weight.shape == (3, 512)
    assert any("head of another size" in note and "fc.weight" in note for note in built.notes)
    assert built.freeze_policy == "backbone"


def test_weights_file_that_needs_pickled_code_is_refused_and_not_run(tmp_path):
    path = tmp_path / "hostile.pt"
    torch.save({"state_dict": {}, "payload": Path("x")}, path)
    with pytest.raises(WeightsError, match="pickled code"):
        build_model(ModelConfig(arch="resnet18", weights=str(path)), num_classes=3)

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model": Exploit()}, path)
    with pytest.raises(WeightsError, match="pickled code") as caught:
        build_model(ModelConfig(arch="resnet18", weights=str(path)), num_classes=3)
    assert "weights_only" not in str(caught.value) and not marker.exists()


@pytest.mark.parametrize("content", [b"", b"garbage bytes"])
def test_unreadable_weights_files_are_clear_errors(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="is empty|not a readable weights file") as caught:
        build_model(ModelConfig(arch="resnet18", weights=str(path)), num_classes=3)
    assert "weights_only" not in str(caught.value)


def test_weights_for_another_architecture_are_rejected(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"totally.different": torch.zeros(3)}, path)
    with pytest.raises(WeightsError, match="another model"):
        build_model(ModelConfig(arch="resnet18", weights=str(path)), num_classes=3)


def test_timm_weights_are_read_from_the_hugging_face_cache(tmp_path):
    timm = pytest.importorskip("timm")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    reference = timm.create_model("test_resnet", pretrained=False)
    state = {k: v + 0.25 if v.is_floating_point() else v for k, v in reference.state_dict().items()}
    commit = "0" * 40
    repo = tmp_path / "hf" / "hub" / "models--timm--test_resnet.r160_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    safetensors_torch.save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / "model.safetensors"))
    script = (
        "import torch\n"
        "from tlcli.config import ModelConfig\n"
        "from tlcli.models.registry import build_model\n"
        "b = build_model(ModelConfig(arch='timm:test_resnet'), num_classes=5)\n"
        "w = next(iter(b.model.state_dict().values()))\n"
        "print(b.weights, b.num_classes, b.freeze_policy, round(float(w.flatten()[0]), 6))\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    expected = round(float(next(iter(state.values())).flatten()[0]), 6)
    assert done.stdout.split() == ["timm:test_resnet", "5", "backbone", str(expected)]


def test_missing_timm_weights_name_the_hugging_face_cache(tmp_path):
    pytest.importorskip("timm")
    script = (
        "from tlcli.config import ModelConfig\n"
        "from tlcli.errors import WeightsError\n"
        "from tlcli.models.registry import build_model\n"
        "try:\n"
        "    build_model(ModelConfig(arch='timm:test_resnet'), num_classes=5)\n"
        "except WeightsError as e:\n"
        "    print(e)\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert str(tmp_path / "hf" / "hub" / "models--timm--test_resnet.r160_in1k") in done.stdout
