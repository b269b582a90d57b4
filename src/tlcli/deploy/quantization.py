"""``export --quantize int8``: an ONNX model with int8 weights and activations for CPUs, calibrated
on the run's own training images and refused when it loses too much test accuracy.

onnxruntime's static quantization (QDQ format, per-channel weights) is used rather than dynamic
quantization, which leaves convolutions in fp32 and so gains nothing on a CNN. The first layers
see the images themselves and are the most sensitive to 8 bits (EfficientNet-Lite0 on digits:
the whole network in int8 lost 10 points, its first 8 layers kept in fp32 under 1). So the
quantization is tried with the first 0, 1, 2, 4, 8 ... layers kept in fp32, and the first whose
accuracy on the validation split stays within the bound is kept. It is then compared with the
fp32 export on the run's test split (accuracy of both, top-1 agreement) and written only when
the drop there is within the bound too.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tlcli.core.config import TrainConfig
from tlcli.data.imagesets import ImageSet
from tlcli.data.sources import load_data
from tlcli.data.transforms import Preprocess, build_transform
from tlcli.core.errors import DataError, TlcliError
from tlcli.evaluation.evaluate import label_map
from tlcli.core.files import write_file_atomically

PARITY_LIMIT = 2000  # at most this many test images are compared
_BATCH = 32


@dataclass
class QuantizedParity:
    split: str
    images: int
    calibration_images: int
    fp32_accuracy: float
    int8_accuracy: float
    top1_agreement: float
    max_drop_points: float
    fp32_layers: int  # the first layers kept in fp32
    layers: int

    @property
    def drop_points(self) -> float:
        return (self.fp32_accuracy - self.int8_accuracy) * 100

    @property
    def passed(self) -> bool:
        return self.drop_points <= self.max_drop_points

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "images": self.images, "calibration_images": self.calibration_images,
                "fp32_accuracy": self.fp32_accuracy, "int8_accuracy": self.int8_accuracy, "top1_agreement": self.top1_agreement,
                "accuracy_drop_points": self.drop_points, "max_accuracy_drop_points": self.max_drop_points, "passed": self.passed,
                "fp32_layers": self.fp32_layers, "layers": self.layers}


@dataclass
class RunImages:
    train: ImageSet
    val: ImageSet  # where the layers kept in fp32 are chosen (the test split when val is empty)
    test: ImageSet
    test_split: str
    labels: list[int]  # the data's label index -> the checkpoint's class index


def run_images(checkpoint: dict[str, Any], data: str | None) -> RunImages:
    """The run's training and test images, from where it trained (or ``data``)."""
    config = TrainConfig.from_dict(checkpoint["config"])
    dataset = load_data(replace(config.data, source=data) if data else config.data)
    test_split = "test" if len(dataset.splits["test"]) else "val"
    if not len(dataset.splits["train"]) or not len(dataset.splits[test_split]):
        raise DataError(f"{dataset.source} has no training or held-out images: int8 needs both, to calibrate and to check accuracy")
    val = dataset.splits["val"] if len(dataset.splits["val"]) else dataset.splits[test_split]
    return RunImages(dataset.splits["train"], val, dataset.splits[test_split], test_split, label_map(dataset, checkpoint["classes"]))


def _batches(images: ImageSet, transform, draft_size: int, limit: int) -> Iterator[tuple[np.ndarray, list[int]]]:
    """(inputs, labels) of the first ``limit`` readable images, ``_BATCH`` at a time."""
    from tlcli.data.images import BadImageError

    inputs, labels = [], []
    for index in range(min(limit, len(images))):
        try:
            inputs.append(transform(images.load(index, draft_size=draft_size)).numpy())
        except (BadImageError, OSError):
            continue
        labels.append(images.labels[index])
        if len(inputs) == _BATCH:
            yield np.stack(inputs), labels
            inputs, labels = [], []
    if inputs:
        yield np.stack(inputs), labels


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over the run's training images."""

    def __init__(self, batches: Iterator[tuple[np.ndarray, list[int]]], input_name: str):
        self.batches, self.input_name, self.images = batches, input_name, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        if batch is None:
            return None
        self.images += len(batch[0])
        return {self.input_name: batch[0]}

    def rewind(self) -> None:  # called by some onnxruntime versions; one pass is all calibration needs
        pass


COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul")
FP32_PREFIXES = (0, 1, 2, 4, 8, 16, 32, 64, 128)  # how many of the first layers stay fp32, tried in turn


def _prepare(fp32: Path, prepared: Path) -> list[str]:
    """onnxruntime's pre-processing (shape inference, folded BatchNorm), and the graph's layers in order."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with contextlib.redirect_stdout(io.StringIO()):
        try:
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=False)
        except Exception:  # a graph the optimiser cannot prepare is quantized as it is
            shutil.copyfile(fp32, prepared)
    return [node.name for node in onnx.load(str(prepared)).graph.node if node.op_type in COMPUTE_OPS]


def _quantize(prepared: Path, int8: Path, calibration: _Calibration, fp32_layers: list[str]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    # onnxruntime logs its progress and warns about every tensor it keeps in fp32 through the root
    # logger: not the user's business, and only for as long as it quantizes.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            quantize_static(str(prepared), str(int8), calibration, quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                            nodes_to_exclude=fp32_layers)
        finally:
            root.setLevel(level)


def _predictions(model: Path, batches: Iterator[tuple[np.ndarray, list[int]]]) -> tuple[np.ndarray, np.ndarray]:
    """(top-1 class, data label) of every image, through onnxruntime with PyTorch's thread count."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    predicted, labels = [], []
    for inputs, batch_labels in batches:
        predicted.append(session.run(None, {name: inputs})[0].argmax(1))
        labels += batch_labels
    if not labels:
        raise DataError("none of the held-out images could be read to check the int8 model")
    return np.concatenate(predicted), np.asarray(labels)


def _accuracy(predicted: np.ndarray, labels: np.ndarray, label_map: list[int]) -> float:
    return float((predicted == np.asarray(label_map)[labels]).mean())


def quantize_int8(fp32: Path, target: Path, *, preprocess: Preprocess, embedded: bool, images: RunImages, calibration_images: int,
                  max_drop_points: float, metadata: dict[str, str]) -> QuantizedParity:
    """Quantize the exported ``fp32`` model into ``target``, or raise if it loses more than
    ``max_drop_points`` of accuracy (``target`` is then left as it was)."""
    if calibration_images < 1:
        raise TlcliError(f"calibration needs at least one image, got {calibration_images}")
    transform = build_transform(preprocess, normalize=not embedded)

    def batches(split: ImageSet, limit: int = PARITY_LIMIT):
        return _batches(split, transform, preprocess.resize_size, limit)

    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as scratch:
        prepared, int8 = Path(scratch) / "prepared.onnx", Path(scratch) / "int8.onnx"
        layers = _prepare(fp32, prepared)
        name = _input_name(prepared)
        reference = _accuracy(*_predictions(prepared, batches(images.val)), images.labels)
        for kept in [k for k in FP32_PREFIXES if k < max(1, len(layers))]:
            calibration = _Calibration(batches(images.train, calibration_images), name)
            _quantize(prepared, int8, calibration, layers[:kept])
            if (reference - _accuracy(*_predictions(int8, batches(images.val)), images.labels)) * 100 <= max_drop_points:
                break
        parity = _test_parity(fp32, int8, target, lambda: batches(images.test), images, calibrated=calibration.images,
                              max_drop_points=max_drop_points, kept=kept, layers=len(layers))
        _write(int8, target, {**metadata, "tlcli.quantized": "int8", "tlcli.calibration_images": str(calibration.images),
                              "tlcli.fp32_layers": str(kept)})
    return parity


def _input_name(model: Path) -> str:
    import onnxruntime

    return onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_inputs()[0].name


def _test_parity(fp32: Path, int8: Path, target: Path, batches: Callable[[], Iterator], images: RunImages, *, calibrated: int,
                 max_drop_points: float, kept: int, layers: int) -> QuantizedParity:
    """The int8 model against fp32 on the test split; raises when it loses too much there."""
    fp32_predicted, labels = _predictions(fp32, batches())
    int8_predicted, _ = _predictions(int8, batches())
    parity = QuantizedParity(
        images.test_split, len(labels), calibrated, _accuracy(fp32_predicted, labels, images.labels),
        _accuracy(int8_predicted, labels, images.labels), float((fp32_predicted == int8_predicted).mean()), max_drop_points, kept, layers,
    )
    if not parity.passed:
        raise TlcliError(
            f"the int8 model loses {parity.drop_points:.1f} points of {parity.split} accuracy (fp32 {parity.fp32_accuracy:.1%}, "
            f"int8 {parity.int8_accuracy:.1%} on {parity.images} images, its first {kept} of {layers} layers in fp32), more than "
            f"--max-accuracy-drop {max_drop_points:g}: {target} not written" + (" (the file there is an earlier export's)" if target.exists() else "")
            + "; calibrate on more images (--calibration-images), or export fp32 (without --quantize)")
    return parity


def _write(int8: Path, target: Path, metadata: dict[str, str]) -> None:
    """With tlcli's metadata: the fp32 graph's, which quantization carried over, replaced, so that
    each key is there once (onnx's checker refuses duplicates)."""
    import onnx

    graph = onnx.load(str(int8))
    kept = [(entry.key, entry.value) for entry in graph.metadata_props if entry.key not in metadata]
    del graph.metadata_props[:]
    for key, value in [*kept, *metadata.items()]:
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    write_file_atomically(graph.SerializeToString(), target)
