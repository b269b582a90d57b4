"""tlcli export: ONNX and TorchScript with classes and preprocessing inside, parity checked; ONNX predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

onnxruntime = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from tlcli.core.config import ModelConfig, RunConfig, TrainConfig
    from tests.helpers import train

    folder = tmp_path_factory.mktemp("export")
    result = train(TrainConfig(model=ModelConfig(arch="simple_cnn"), run=RunConfig(epochs=2, out=str(folder / "run"), workers=0)))
    return result.run_dir


@pytest.fixture
def samples(run_cli, tmp_path):
    assert run_cli("data", "export", "digits", str(tmp_path / "samples"), "--limit", "1").code == 0
    return tmp_path / "samples" / "test"


@pytest.mark.parametrize("embed", [False, True], ids=["float-input", "uint8-input"])
def test_onnx_export_carries_classes_and_preprocessing_and_agrees_with_pytorch(run_cli, run, samples, tmp_path, embed):
    target = tmp_path / "model.onnx"
    args = ["export", str(run), "--data", "digits", "--out", str(target), "--json"] + (["--embed-preprocessing"] if embed else [])
    result = run_cli(*args)
    assert result.code == 0, result.stderr
    parity = result.json()["parity"]
    assert parity["images"] == 8 and parity["max_abs_logit_diff"] < 1e-4 and parity["top1_agreement"] == 1.0
    assert result.stdout.count("{") >= 1 and "torch.onnx" not in result.stdout  # the exporter's chatter stays out
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.onnx", "samples"]  # no weights file or temporary beside it

    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    checkpoint = torch.load(run / "best.pt", weights_only=True)
    assert json.loads(metadata["tlcli.classes"]) == checkpoint["classes"]
    assert json.loads(metadata["tlcli.preprocess"]) == checkpoint["preprocess"]
    model_input = session.get_inputs()[0]
    assert model_input.type == ("tensor(uint8)" if embed else "tensor(float)")
    for batch in (1, 5):  # dynamic batch
        dtype = np.uint8 if embed else np.float32
        outputs = session.run(None, {model_input.name: np.zeros((batch, 3, 32, 32), dtype=dtype)})[0]
        assert outputs.shape == (batch, 10)

    exported = run_cli("predict", str(samples), "--model", str(target), "--json")
    native = run_cli("predict", str(samples), "--checkpoint", str(run), "--json")
    assert exported.code == native.code == 0
    for ours, theirs in zip(exported.json(), native.json()):
        assert [p["label"] for p in ours["predictions"]] == [p["label"] for p in theirs["predictions"]]
        for a, b in zip(ours["predictions"], theirs["predictions"]):
            assert a["probability"] == pytest.approx(b["probability"], abs=1e-5)


def test_torchscript_export_with_extra_files(run_cli, run, tmp_path):
    target = tmp_path / "model.pt"
    result = run_cli("export", str(run), "--format", "torchscript", "--out", str(target), "--json")
    assert result.code == 0, result.stderr
    assert result.json()["passed"] and result.json()["parity"]["max_abs_logit_diff"] < 1e-5
    assert [path.name for path in tmp_path.iterdir()] == ["model.pt"]
    extra = {"tlcli.classes.json": "", "tlcli.preprocess.json": ""}
    loaded = torch.jit.load(str(target), _extra_files=extra)
    assert json.loads(extra["tlcli.classes.json"]) == [str(d) for d in range(10)]
    assert json.loads(extra["tlcli.preprocess.json"])["input_size"] == 32
    assert loaded(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_bad_export_and_onnx_predict_input(run_cli, run, samples, tmp_path):
    assert run_cli("export", str(run), "--format", "tflite").code == 2
    missing = run_cli("predict", str(samples), "--model", str(tmp_path / "none.onnx"))
    assert missing.code == 1 and "does not exist" in missing.stderr
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    junk = run_cli("predict", str(samples), "--model", str(tmp_path / "junk.onnx"))
    assert junk.code == 1 and "not a readable ONNX model" in junk.stderr and "Traceback" not in junk.stderr

    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 32, 32])])
    onnx.save(helper.make_model(graph), str(tmp_path / "foreign.onnx"))
    foreign = run_cli("predict", str(samples), "--model", str(tmp_path / "foreign.onnx"))
    assert foreign.code == 1 and "not exported by tlcli" in foreign.stderr


def test_int8_export_is_calibrated_on_the_run_and_checked_on_its_test_split(run_cli, run, samples, tmp_path):
    target = tmp_path / "model.int8.onnx"
    result = run_cli("export", str(run), "--quantize", "int8", "--calibration-images", "64", "--out", str(target), "--json")
    assert result.code == 0, result.stderr
    quantized = result.json()["quantized"]
    assert quantized["split"] == "test" and quantized["images"] == 179 and quantized["calibration_images"] == 64
    assert quantized["int8_accuracy"] >= quantized["fp32_accuracy"] - 0.01 and quantized["top1_agreement"] >= 0.95
    assert quantized["fp32_accuracy"] > 0.5  # a trained model, not chance: the comparison means something
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    assert metadata["tlcli.quantized"] == "int8" and metadata["tlcli.calibration_images"] == "64"
    assert 0 <= quantized["fp32_layers"] < quantized["layers"] and metadata["tlcli.fp32_layers"] == str(quantized["fp32_layers"])
    import onnx

    onnx.checker.check_model(str(target))  # each metadata key once, a valid graph
    assert any(node.op_type == "QuantizeLinear" for node in onnx.load(str(target)).graph.node)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.int8.onnx", "samples"]

    # Both backends stream the same rows; the int8 model agrees with PyTorch on these digits.
    native = run_cli("predict", str(samples), "-c", str(run), "--csv", "--topk", "1")
    int8 = run_cli("predict", str(samples), "--model", str(target), "--csv", "--topk", "1")
    assert native.code == int8.code == 0
    labels = [[row.split(",")[2] for row in out.stdout.splitlines()[1:]] for out in (native, int8)]
    assert len(labels[0]) == 10 and sum(a == b for a, b in zip(*labels)) >= 9


def test_an_int8_model_that_loses_too_much_is_refused_and_not_written(run, tmp_path):
    from tlcli.core.errors import TlcliError
    from tlcli.deploy.exporting import export_checkpoint

    target = tmp_path / "kept.onnx"
    export_checkpoint(str(run), out=target)  # an earlier export, which a refused one must leave as it is
    earlier = target.read_bytes()
    # No int8 model is ten points more accurate than its own fp32 model: a bound of -10 refuses any.
    with pytest.raises(TlcliError, match=r"loses .* more than --max-accuracy-drop -10: .*kept.onnx not written \(the file there is an earlier"):
        export_checkpoint(str(run), quantize="int8", out=target, calibration_images=16, max_accuracy_drop=-10)
    assert target.read_bytes() == earlier
    assert sorted(path.name for path in tmp_path.iterdir()) == ["kept.onnx"]


def test_export_replaces_only_an_earlier_export(run_cli, run, tmp_path):
    import os

    notes = tmp_path / "notes.onnx"
    notes.write_text("the user's notes")
    os.mkfifo(tmp_path / "pipe.onnx")
    (tmp_path / "link.onnx").symlink_to(notes)
    for target in (notes, tmp_path / "pipe.onnx", tmp_path / "link.onnx"):
        refused = run_cli("export", str(run), "--out", str(target))
        assert refused.code == 1 and "choose another --out" in refused.stderr, refused.stderr
    assert notes.read_text() == "the user's notes" and (tmp_path / "link.onnx").is_symlink()
    for format, name in (("onnx", "model.onnx"), ("torchscript", "model.pt")):  # its own earlier export, replaced
        assert [run_cli("export", str(run), "-f", format, "--out", str(tmp_path / name)).code for _ in range(2)] == [0, 0]


@pytest.mark.parametrize("arguments", [["--quantize", "int4"], ["--quantize", "int8", "--format", "torchscript"], ["--max-accuracy-drop", "-1"],
                                       ["--max-accuracy-drop", "2"], ["--calibration-images", "10"]])
def test_bad_quantization_options_are_usage_errors(run_cli, run, arguments):
    result = run_cli("export", str(run), *arguments)
    assert result.code == 2, result.stderr
