"""``tlcli.deploy.quantization``: the int8 export's parts on a tiny hand-made ONNX classifier
(bright vs dark 4x4 images) instead of a trained network, so that onnxruntime's calibration takes
a fraction of a second: the parity record, the image batches and calibration reader, accuracy
through the data-to-checkpoint label map, the run's splits, and ``quantize_int8`` writing a
quantized model with tlcli's metadata, or refusing one that loses too much and writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import make_class_folder, write_image
from tlcli.core.config import DataConfig, TrainConfig
from tlcli.core.errors import DataError, TlcliError
from tlcli.data.imagesets import ArrayImages, FileImages
from tlcli.data.transforms import Preprocess, build_transform

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from tlcli.deploy import quantization  # noqa: E402 - needs onnxruntime
from tlcli.deploy.quantization import QuantizedParity, RunImages, quantize_int8, run_images  # noqa: E402

PREPROCESS = Preprocess(input_size=4, resize_size=4, mean=(0.5,), std=(0.5,), channels=1)
METADATA = {"tlcli.classes": json.dumps(["bright", "dark"]), "tlcli.preprocess": json.dumps(PREPROCESS.to_dict())}


def _bright_or_dark(count: int, seed: int) -> ArrayImages:
    """Alternately bright (label 0) and dark (label 1) 4x4 images: any prefix holds both."""
    rng = np.random.default_rng(seed)
    labels = [i % 2 for i in range(count)]
    pixels = np.stack([rng.integers(0, 76, (4, 4)) if label else rng.integers(180, 256, (4, 4)) for label in labels]).astype(np.uint8)
    return ArrayImages(pixels, labels, [f"{seed}/{i}" for i in range(count)])


def _classifier(target: Path) -> Path:
    """Flatten, Gemm, Relu, Gemm: two units for brightness, two for darkness, summed per class;
    metadata as the fp32 export carries it."""
    from onnx import TensorProto, helper, numpy_helper

    first = np.full((4, 16), 1 / 16, np.float32)
    first[2:] *= -1
    second = np.array([[1, 1, 0, 0], [0, 0, 1, 1]], np.float32)
    weights = [numpy_helper.from_array(array, name) for array, name in
               ((first, "w1"), (np.zeros(4, np.float32), "b1"), (second, "w2"), (np.zeros(2, np.float32), "b2"))]
    nodes = [helper.make_node("Flatten", ["pixels"], ["flat"], axis=1, name="flatten"),
             helper.make_node("Gemm", ["flat", "w1", "b1"], ["hidden"], transB=1, name="gemm1"),
             helper.make_node("Relu", ["hidden"], ["relu"], name="relu"),
             helper.make_node("Gemm", ["relu", "w2", "b2"], ["logits"], transB=1, name="gemm2")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 1, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 2])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, METADATA)
    onnx.save(model, str(target))
    return target


@pytest.fixture
def images() -> RunImages:
    return RunImages(train=_bright_or_dark(16, 1), val=_bright_or_dark(8, 2), test=_bright_or_dark(10, 3), test_split="test", labels=[0, 1])


def _quantize(tmp_path: Path, images: RunImages, **options) -> tuple[Path, QuantizedParity]:
    target = tmp_path / "model.int8.onnx"
    options = {"calibration_images": 8, "max_drop_points": 1.0, **options}
    parity = quantize_int8(_classifier(tmp_path / "fp32.onnx"), target, preprocess=PREPROCESS, embedded=False, images=images,
                           metadata={**METADATA, "tlcli.quantized": "none"}, **options)
    return target, parity


def test_the_int8_model_is_quantized_checked_on_the_test_split_and_carries_the_metadata(tmp_path, images):
    target, parity = _quantize(tmp_path, images)

    assert (parity.split, parity.images, parity.calibration_images) == ("test", 10, 8)
    assert (parity.fp32_accuracy, parity.int8_accuracy, parity.top1_agreement, parity.passed) == (1.0, 1.0, 1.0, True)
    assert (parity.fp32_layers, parity.layers) == (0, 2)  # the first try, nothing kept in fp32, was close enough
    model = onnx.load(str(target))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in model.graph.node}
    keys = [entry.key for entry in model.metadata_props]
    assert len(keys) == len(set(keys))  # replaced, not repeated: onnx's checker refuses duplicates
    values = {entry.key: entry.value for entry in model.metadata_props}
    assert values["tlcli.classes"] == METADATA["tlcli.classes"]
    assert (values["tlcli.quantized"], values["tlcli.calibration_images"], values["tlcli.fp32_layers"]) == ("int8", "8", "0")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["fp32.onnx", "model.int8.onnx"]  # no scratch left


def test_a_model_that_loses_more_than_the_bound_is_refused_and_nothing_written(tmp_path, images):
    earlier = tmp_path / "model.int8.onnx"
    earlier.write_bytes(b"an earlier export")

    # No int8 model beats its fp32 model by ten points: a bound of -10 refuses any.
    with pytest.raises(TlcliError, match=r"loses -?0\.0 points of test accuracy .* more than --max-accuracy-drop -10: .*"
                                         r"not written \(the file there is an earlier export's\)"):
        _quantize(tmp_path, images, max_drop_points=-10)

    assert earlier.read_bytes() == b"an earlier export"


def test_calibration_needs_an_image(tmp_path, images):
    with pytest.raises(TlcliError, match="calibration needs at least one image, got 0"):
        _quantize(tmp_path, images, calibration_images=0)


def test_the_parity_record_says_the_drop_in_points_and_whether_it_passed():
    parity = QuantizedParity("test", 100, 64, 0.90, 0.885, 0.97, 1.0, 2, 10)

    assert parity.drop_points == pytest.approx(1.5) and not parity.passed
    assert QuantizedParity("val", 10, 8, 0.9, 0.9, 1.0, 0.0, 0, 3).passed
    document = parity.to_dict()
    assert document["accuracy_drop_points"] == pytest.approx(1.5) and document["passed"] is False
    assert {key: document[key] for key in ("split", "images", "calibration_images", "fp32_layers", "layers")} == {
        "split": "test", "images": 100, "calibration_images": 64, "fp32_layers": 2, "layers": 10}


def test_batches_skip_unreadable_images_and_stop_at_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(quantization, "_BATCH", 2)
    paths = [write_image(tmp_path / f"{i}.png", size=(4, 4), mode="L", seed=i) for i in range(5)]
    paths[1].write_bytes(b"broken")
    files = FileImages(tmp_path, paths, [0, 1, 0, 1, 0])

    batches = list(quantization._batches(files, build_transform(PREPROCESS), 4, limit=4))

    assert [labels for _, labels in batches] == [[0, 0], [1]]  # the broken image 1 skipped, image 4 past the limit
    assert [inputs.shape for inputs, _ in batches] == [(2, 1, 4, 4), (1, 1, 4, 4)]
    assert batches[0][0].dtype == np.float32


def test_the_calibration_reader_hands_out_batches_under_the_input_name_and_counts_them():
    batches = iter([(np.zeros((3, 1, 4, 4), np.float32), [0, 1, 0]), (np.ones((2, 1, 4, 4), np.float32), [1, 1])])
    reader = quantization._Calibration(batches, "pixels")

    first, second, end = reader.get_next(), reader.get_next(), reader.get_next()

    assert list(first) == ["pixels"] and first["pixels"].shape == (3, 1, 4, 4) and second["pixels"].shape == (2, 1, 4, 4)
    assert end is None and reader.images == 5


def test_accuracy_maps_the_data_labels_to_the_checkpoint_classes():
    # The data's label 0 is the checkpoint's class 1 and the other way round.
    predicted, labels = np.array([1, 0, 1, 0]), np.array([0, 1, 0, 0])

    assert quantization._accuracy(predicted, labels, [1, 0]) == 0.75
    assert quantization._accuracy(predicted, labels, [0, 1]) == 0.25  # the same answers, read without the map


def _checkpoint(folder: Path, classes: list[str], **data) -> dict:
    return {"config": TrainConfig(data=DataConfig(str(folder), **data)).to_dict(), "classes": classes}


def test_run_images_are_the_runs_splits_with_its_label_map(tmp_path):
    folder = make_class_folder(tmp_path / "tiny", {"a": 6, "b": 6}, size=(8, 8))

    found = run_images(_checkpoint(folder, ["b", "a"], val_split=0.34, test_split=0.0), None)

    assert found.test_split == "val" and found.val is found.test  # no test split: both are val
    assert len(found.train) + len(found.test) == 12 and len(found.test) > 0
    assert found.labels == [1, 0]  # the data's a, b are the checkpoint's classes 1 and 0


def test_run_images_read_other_data_when_given_and_need_held_out_images(tmp_path):
    trained_on = make_class_folder(tmp_path / "old", {"a": 3, "b": 3}, size=(8, 8))
    other = make_class_folder(tmp_path / "new", {"a": 5, "b": 5}, size=(8, 8), seed=10_000)

    found = run_images(_checkpoint(trained_on, ["a", "b"], val_split=0.2, test_split=0.2), str(other))

    assert len(found.train) + len(found.val) + len(found.test) == 10 and found.test_split == "test"
    with pytest.raises(DataError, match="no training or held-out images"):
        run_images(_checkpoint(trained_on, ["a", "b"], val_split=0.0, test_split=0.0), None)
