"""``tlcli.prediction.classifiers``: ``load_classifier`` finding a checkpoint (a run folder, a run
name, the latest run) or an ONNX file, each backend's class probabilities, preprocessing and
test-time augmentation, and the errors for a model file that is missing, unreadable or not
tlcli's. The ONNX model is the trained checkpoint's network written out layer by layer with
``onnx.helper``, so both backends must agree on the same weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import write_image
from tlcli.core.errors import CheckpointError, TlcliError
from tlcli.data.images import load_image
from tlcli.prediction.classifiers import OnnxClassifier, TorchClassifier, load_classifier

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

RUN_NAME = "tiny-run"


@pytest.fixture(scope="module")
def trained(tiny_run) -> dict:
    """The session's tiny run, named RUN_NAME under its own checkpoints folder (so also the latest run there)."""
    assert tiny_run.run_dir.name == RUN_NAME
    return {"base": tiny_run.base, "run": tiny_run.run_dir, "checkpoints": tiny_run.checkpoints, "images": tiny_run.images}

@pytest.fixture(scope="module")
def torch_classifier(trained) -> TorchClassifier:
    return load_classifier(str(trained["run"]), device="cpu")


@pytest.fixture
def batch(trained, torch_classifier) -> torch.Tensor:
    return torch.stack([torch_classifier.transform(load_image(path)) for path in trained["images"]])


def _onnx_from_checkpoint(checkpoint: dict, target: Path, *, metadata: dict[str, str] | None) -> Path:
    """The checkpoint's mlp (Flatten, then Linear and ReLU layers) as an ONNX graph of Gemm and
    Relu nodes with the same weights; ``metadata`` as tlcli's exporter would attach it."""
    from onnx import TensorProto, helper, numpy_helper

    state = checkpoint["state_dict"]
    linears = sorted({key.rsplit(".", 1)[0] for key in state if key.endswith(".weight")}, key=lambda k: int(k.split(".")[-1]))
    channels, side = checkpoint["preprocess"]["channels"], checkpoint["preprocess"]["input_size"]
    nodes, weights, current = [helper.make_node("Flatten", ["pixels"], ["h0"], axis=1)], [], "h0"
    for index, layer in enumerate(linears):
        weights += [numpy_helper.from_array(state[f"{layer}.weight"].numpy(), f"w{index}"),
                    numpy_helper.from_array(state[f"{layer}.bias"].numpy(), f"b{index}")]
        output = "logits" if index == len(linears) - 1 else f"g{index}"
        nodes.append(helper.make_node("Gemm", [current, f"w{index}", f"b{index}"], [output], transB=1))
        if output != "logits":
            nodes.append(helper.make_node("Relu", [output], [f"r{index}"]))
            current = f"r{index}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", channels, side, side])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", len(checkpoint["classes"])])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what any onnxruntime of the last years reads
    helper.set_model_props(model, metadata or {})
    onnx.save(model, str(target))
    return target


@pytest.fixture
def onnx_file(trained, tmp_path) -> Path:
    checkpoint = torch.load(trained["run"] / "best.pt", weights_only=False)
    metadata = {"tlcli.classes": json.dumps(checkpoint["classes"]), "tlcli.preprocess": json.dumps(checkpoint["preprocess"])}
    return _onnx_from_checkpoint(checkpoint, tmp_path / "model.onnx", metadata=metadata)


def test_a_run_folder_loads_its_best_checkpoint_with_classes_and_preprocessing(trained, torch_classifier):
    assert isinstance(torch_classifier, TorchClassifier)
    assert torch_classifier.source == trained["run"] / "best.pt"
    assert torch_classifier.classes == ["a", "b"]
    assert torch_classifier.draft_size == 8
    # The trained preset: one channel, 8x8, normalised around 0.
    image = torch_classifier.transform(load_image(trained["images"][0]))
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32 and image.min() >= -1 and image.max() <= 1


def test_a_run_name_and_nothing_at_all_find_the_run_under_checkpoints(trained, monkeypatch):
    monkeypatch.setenv("TLCLI_CHECKPOINTS_DIR", str(trained["checkpoints"]))

    assert load_classifier(RUN_NAME, device="cpu").source == trained["checkpoints"] / RUN_NAME / "best.pt"
    assert load_classifier(None, device="cpu").source.resolve() == (trained["run"] / "best.pt").resolve()  # the latest run


def test_a_checkpoint_that_is_not_there_is_a_checkpoint_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCLI_CHECKPOINTS_DIR", str(tmp_path / "checkpoints"))

    with pytest.raises(CheckpointError, match="no checkpoint or run 'nowhere'"):
        load_classifier("nowhere", device="cpu")
    with pytest.raises(CheckpointError, match="no run yet"):
        load_classifier(None, device="cpu")


def test_probabilities_are_a_distribution_per_image(torch_classifier, batch):
    probabilities = torch_classifier(batch)

    assert probabilities.shape == (len(batch), 2) and probabilities.dtype == torch.float32
    assert torch.allclose(probabilities.sum(1), torch.ones(len(batch)))
    assert (probabilities >= 0).all() and len({tuple(row.tolist()) for row in probabilities}) > 1  # each image its own answer


def test_tta_averages_over_views_that_leave_a_flat_image_unchanged(trained, torch_classifier, tmp_path, batch):
    averaging = load_classifier(str(trained["run"]), device="cpu", tta=True)
    flat = torch_classifier.transform(load_image(write_image(tmp_path / "flat.png", size=(8, 8), mode="L", color=90)))

    # Zooming or rotating a flat image changes no pixel: every view gives the same answer.
    assert torch.allclose(averaging(flat[None]), torch_classifier(flat[None]), atol=1e-6)
    # Random pixels do move: the average is another distribution than the plain prediction.
    averaged = averaging(batch)
    assert torch.allclose(averaged.sum(1), torch.ones(len(batch)))
    assert not torch.allclose(averaged, torch_classifier(batch), atol=1e-6)


def test_an_onnx_file_is_run_by_onnxruntime_and_agrees_with_pytorch(torch_classifier, onnx_file, trained, batch):
    exported = load_classifier(str(onnx_file))  # a checkpoint argument ending in .onnx is a model file

    assert isinstance(exported, OnnxClassifier) and exported.source == onnx_file
    assert exported.classes == torch_classifier.classes and exported.draft_size == torch_classifier.draft_size
    image = load_image(trained["images"][0])
    assert torch.equal(exported.transform(image), torch_classifier.transform(image))
    assert torch.allclose(exported(batch), torch_classifier(batch), atol=1e-5)


def test_model_file_takes_precedence_over_the_checkpoint(onnx_file, trained):
    assert isinstance(load_classifier(str(trained["run"]), model_file=onnx_file), OnnxClassifier)


def test_an_onnx_model_with_uint8_input_gets_unnormalised_pixels(trained, tmp_path):
    checkpoint = torch.load(trained["run"] / "best.pt", weights_only=False)
    metadata = {"tlcli.classes": json.dumps(checkpoint["classes"]), "tlcli.preprocess": json.dumps(checkpoint["preprocess"]),
                "tlcli.input": "uint8"}
    exported = load_classifier(None, model_file=_onnx_from_checkpoint(checkpoint, tmp_path / "m.onnx", metadata=metadata))

    pixels = exported.transform(load_image(trained["images"][0]))

    assert pixels.dtype == torch.uint8
    assert torch.equal(pixels[0], torch.from_numpy(np.array(load_image(trained["images"][0]).convert("L"))))


def test_onnx_files_that_cannot_be_used_are_clear_errors(trained, tmp_path):
    checkpoint = torch.load(trained["run"] / "best.pt", weights_only=False)
    (tmp_path / "text.onnx").write_text("not a model")
    foreign = _onnx_from_checkpoint(checkpoint, tmp_path / "foreign.onnx", metadata=None)

    with pytest.raises(TlcliError, match="model file .*gone.onnx does not exist"):
        load_classifier(str(tmp_path / "gone.onnx"))
    with pytest.raises(TlcliError, match="text.onnx is not a readable ONNX model"):
        load_classifier(str(tmp_path / "text.onnx"))
    with pytest.raises(TlcliError, match="foreign.onnx was not exported by tlcli"):
        load_classifier(None, model_file=foreign)
