"""Pretrained weights load through the ecosystems' real caches; files load safely."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from tlcli.run.checkpoint import load_checkpoint
from tlcli.core.config import ModelConfig
from tlcli.core.errors import WeightsError
from tlcli.models.downloads import torch_hub_path
from tlcli.models.registry import build_model

from tests.helpers import make_class_folder, place_timm_weights, place_torchvision_weights


def test_imagenet_weights_are_read_from_the_torch_home_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    reference = place_torchvision_weights("squeezenet1_1")
    assert torch_hub_path("https://x/squeezenet1_1-b8a52dc0.pth").is_relative_to(tmp_path)
    built = build_model(ModelConfig(arch="squeezenet1_1"), num_classes=4)
    assert built.weights == "torchvision:squeezenet1_1.IMAGENET1K_V1"
    state = built.model.state_dict()
    assert torch.equal(state["features.0.weight"], reference["features.0.weight"])
    assert state["classifier.1.weight"].shape == (4, 512, 1, 1)
    assert built.freeze_policy == "backbone"


def test_missing_cached_weights_name_the_expected_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
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
        "from tlcli.core.config import ModelConfig\n"
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
        "from tlcli.core.config import ModelConfig\n"
        "from tlcli.core.errors import WeightsError\n"
        "from tlcli.models.registry import build_model\n"
        "try:\n"
        "    build_model(ModelConfig(arch='timm:test_resnet'), num_classes=5)\n"
        "except WeightsError as e:\n"
        "    print(e)\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert str(tmp_path / "hf" / "hub" / "models--timm--test_resnet.r160_in1k") in done.stdout


# Offline: the error comes at once, before any image is read, and names the file to place.

TORCHVISION_FILE = "hub/checkpoints/squeezenet1_1-b8a52dc0.pth"
TIMM_FOLDER = "models--timm--resnet18.a1_in1k"


@pytest.fixture
def proxy(monkeypatch):
    """A local HTTPS proxy, set for this test: 'silent' accepts and never answers (a hanging
    network); 'refusing' answers CONNECT with 200 and then closes the tunnel."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def start(behaviour: str) -> str:
        def serve():
            while True:
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                held.append(connection)
                if behaviour == "refusing":
                    connection.recv(4096)
                    connection.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    connection.close()

        threading.Thread(target=serve, daemon=True).start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        for name in ("HTTPS_PROXY", "https_proxy"):
            monkeypatch.setenv(name, url)
        for name in ("NO_PROXY", "no_proxy", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            monkeypatch.delenv(name, raising=False)
        return url

    yield start
    listener.close()
    for connection in held:
        connection.close()


@pytest.fixture
def tiny_data(tmp_path):
    return make_class_folder(tmp_path / "tiny", {"a": 4, "b": 4})


def _train(run_cli, arch, data, *more):
    started = time.perf_counter()
    result = run_cli("train", "--arch", arch, "--data", data, "--epochs", "1", "--input-size", "32", "--json", *more)
    return result, time.perf_counter() - started


def _single_error(result) -> str:
    assert result.code == 1 and result.stdout == "", result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def _hf_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


@pytest.mark.usefixtures("isolated")
def test_hf_hub_offline_fails_timm_at_once_naming_the_snapshot_file(run_cli, tiny_data, monkeypatch):
    pytest.importorskip("timm")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result, seconds = _train(run_cli, "timm:resnet18", tiny_data)
    message = _single_error(result)
    folder = _hf_cache() / TIMM_FOLDER
    assert seconds < 5 and "HF_HUB_OFFLINE is set" in message
    assert f"place it at {folder / 'snapshots' / 'main' / 'model.safetensors'} and write 'main' into {folder / 'refs' / 'main'}" in message


@pytest.mark.usefixtures("isolated")
@pytest.mark.parametrize("arch", ["squeezenet1_1", "timm:resnet18"])
def test_a_hanging_network_fails_in_seconds_naming_the_file(run_cli, tiny_data, proxy, tmp_path, monkeypatch, arch):
    if arch.startswith("timm:"):
        pytest.importorskip("timm")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    address = proxy("silent")
    result, seconds = _train(run_cli, arch, tiny_data)
    message = _single_error(result)
    expected = _hf_cache() / TIMM_FOLDER / "snapshots" / "main" if arch.startswith("timm:") else tmp_path / "torch" / TORCHVISION_FILE
    assert seconds < 5 and f"no answer from the proxy {address}" in message and str(expected) in message


@pytest.mark.usefixtures("isolated")
def test_torch_announces_a_download_on_stderr_not_stdout(run_cli, tiny_data, proxy, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    proxy("refusing")
    result, _ = _train(run_cli, "squeezenet1_1", tiny_data)
    assert result.code == 1 and result.stdout == ""
    assert 'Downloading: "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth"' in result.stderr
    assert "the download failed" in result.stderr and str(tmp_path / "torch" / TORCHVISION_FILE) in result.stderr


@pytest.mark.usefixtures("isolated")
def test_cached_weights_train_with_a_hanging_network(run_cli, tiny_data, proxy, tmp_path, monkeypatch, checkpoints_dir):
    """A probe or a Hub request would hang on this proxy and fail the run: cached files need neither."""
    pytest.importorskip("timm")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    proxy("silent")
    torchvision_state = place_torchvision_weights("squeezenet1_1")
    folder, timm_state = place_timm_weights("timm/test_resnet.r160_in1k", "test_resnet")
    try:
        for arch, out, state in (("squeezenet1_1", "tv", torchvision_state), ("timm:test_resnet", "timm", timm_state)):
            result, seconds = _train(run_cli, arch, tiny_data, "--out", checkpoints_dir / out)
            # huggingface_hub asking the Hub first would wait 10 s on this proxy before using its cache.
            assert result.code == 0 and seconds < 8, (seconds, result.stderr)
            saved = load_checkpoint(checkpoints_dir / out / "last.pt")
            assert saved["model"]["weights"] == {"squeezenet1_1": "torchvision:squeezenet1_1.IMAGENET1K_V1"}.get(arch, arch)
            first = next(name for name in state if state[name].is_floating_point())
            assert torch.equal(saved["state_dict"][first], state[first]), first
    finally:
        shutil.rmtree(folder)
