"""``export``: a checkpoint as ONNX or TorchScript that predicts exactly what PyTorch predicts.

The class names and the preprocessing travel inside the exported file (ONNX ``metadata_props``,
TorchScript extra files), and every export is checked against the PyTorch model on real or
generated images before it is reported a success.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tlcli.core.version import __version__
from tlcli.run.checkpoint import load_checkpoint, model_from_checkpoint
from tlcli.data.transforms import Preprocess, build_transform
from tlcli.core.errors import ConfigError, TlcliError
from tlcli.core.files import write_atomically, write_file_atomically
from tlcli.engine.tta import averaged_probabilities
from tlcli.models.inputs import UInt8Input

FORMATS = ("onnx", "torchscript")
QUANTIZATIONS = ("none", "int8")
# fp32 logits of the same graph agree to about 1e-5; beyond this, something differs.
PARITY_TOLERANCE = 1e-3
PARITY_IMAGES = 8


class ExportError(TlcliError):
    """The export failed, or the exported model disagrees with PyTorch."""


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float
    top1_agreement: float
    images: int
    embedded_preprocessing: bool
    metadata: dict[str, str] = field(default_factory=dict)
    quantized: Any = None  # tlcli.deploy.quantization.QuantizedParity of an int8 export
    # With tta: the same comparison of the predictions averaged over engine.tta's views (predict --tta).
    tta_max_abs_diff: float | None = None
    tta_top1_agreement: float | None = None

    @property
    def passed(self) -> bool:
        tta = self.tta_max_abs_diff is None or (self.tta_max_abs_diff <= PARITY_TOLERANCE and self.tta_top1_agreement == 1.0)
        return self.max_abs_diff <= PARITY_TOLERANCE and self.top1_agreement == 1.0 and tta

    def __repr__(self) -> str:
        int8 = f", int8 accuracy {self.quantized.int8_accuracy:.4f} vs fp32 {self.quantized.fp32_accuracy:.4f}" if self.quantized else ""
        return (f"ExportResult('{self.path}', {self.format}, parity {'pass' if self.passed else 'FAIL'}: "
                f"max |logit difference| {self.max_abs_diff:.1e}, top-1 agreement {self.top1_agreement:.0%}{int8})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "format": self.format, "passed": self.passed,
            "parity": {"images": self.images, "max_abs_logit_diff": self.max_abs_diff, "top1_agreement": self.top1_agreement,
                       "tolerance": PARITY_TOLERANCE,
                       **({"tta_max_abs_prob_diff": self.tta_max_abs_diff, "tta_top1_agreement": self.tta_top1_agreement}
                          if self.tta_max_abs_diff is not None else {})},
            "embedded_preprocessing": self.embedded_preprocessing,
            "quantized": self.quantized.to_dict() if self.quantized else None,
        }


def metadata_for(checkpoint: dict[str, Any], *, embedded: bool) -> dict[str, str]:
    """What a runtime needs besides the graph: classes and preprocessing, as strings."""
    return {
        "tlcli.classes": json.dumps(checkpoint["classes"]),
        "tlcli.preprocess": json.dumps(checkpoint["preprocess"]),
        "tlcli.input": "uint8" if embedded else "float32-normalized",
        "tlcli.arch": checkpoint["model"]["arch"],
        "tlcli.version": __version__,
    }


def _parity_batch(preprocess: Preprocess, images: list) -> torch.Tensor:
    """uint8 (N, C, H, W): the real transform's resize and crop, before normalisation."""
    transform = build_transform(preprocess, normalize=False)
    return torch.stack([transform(image) for image in images])


def _sample_images(data: str | None, checkpoint: dict[str, Any], count: int) -> list:
    from PIL import Image

    if data:
        from dataclasses import replace

        from tlcli.core.config import TrainConfig
        from tlcli.data.sources import load_data

        config = TrainConfig.from_dict(checkpoint["config"])
        dataset = load_data(replace(config.data, source=data))
        pool = dataset.splits["test"] if len(dataset.splits["test"]) else dataset.splits["train"]
        return [pool.load(i) for i in range(min(count, len(pool)))]
    rng = np.random.default_rng(0)
    side = checkpoint["preprocess"]["resize_size"] + 16
    return [Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for _ in range(count)]


def export_checkpoint(
    spec: str | None,
    *,
    format: str = "onnx",
    out: Path | None = None,
    opset: int = 18,
    dynamic_batch: bool = True,
    embed_preprocessing: bool = False,
    data: str | None = None,
    quantize: str = "none",
    calibration_images: int = 256,
    max_accuracy_drop: float = 1.0,
    tta: bool = False,
) -> ExportResult:
    """Export, check parity with PyTorch, and with ``quantize="int8"`` quantize the ONNX model on
    the run's training images and check its accuracy on the run's test split."""
    from tlcli.run.locate import resolve_checkpoint

    if format not in FORMATS:
        raise ConfigError(f"unknown format '{format}'; choose one of {', '.join(FORMATS)}")
    if quantize not in QUANTIZATIONS or (quantize != "none" and format != "onnx"):
        raise ConfigError(f"--quantize takes {' or '.join(QUANTIZATIONS)}, and int8 only with --format onnx; got {quantize} with {format}")
    path = resolve_checkpoint(spec)
    checkpoint = load_checkpoint(path)
    built = model_from_checkpoint(checkpoint)
    model = built.model.eval()
    preprocess = built.preprocess
    suffix = {"onnx": ".int8.onnx" if quantize == "int8" else ".onnx", "torchscript": ".torchscript.pt"}[format]
    target = Path(out) if out else path.with_suffix(suffix)
    _check_target(target)
    run_images, images = _parity_images(checkpoint, data, quantize)
    wrapped = UInt8Input(model, preprocess).eval() if embed_preprocessing else model
    # The reference is PyTorch fed by the real transform, exactly as `tlcli predict` does it.
    normalised = torch.stack([build_transform(preprocess)(image) for image in images])
    inputs = _parity_batch(preprocess, images) if embed_preprocessing else normalised
    metadata = metadata_for(checkpoint, embedded=embed_preprocessing)
    with torch.no_grad():
        reference = model(normalised)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as scratch:
        graph = Path(scratch) / "fp32.onnx" if run_images else target
        exported = _exported(wrapped, inputs, graph, format=format, arch=built.arch, opset=opset, dynamic_batch=dynamic_batch, metadata=metadata)
        outputs = torch.from_numpy(np.asarray(exported(inputs)))
        difference = (outputs - reference).abs().max().item()
        agreement = (outputs.argmax(1) == reference.argmax(1)).float().mean().item()
        result = ExportResult(target, format, difference, agreement, len(images), embed_preprocessing, metadata)
        if tta:
            result.tta_max_abs_diff, result.tta_top1_agreement = _tta_parity(wrapped, exported, inputs)
        if run_images is not None and not result.passed:
            raise ExportError(f"the fp32 ONNX model disagrees with PyTorch (max logit difference {difference:.2e}): "
                              f"nothing to quantize, {target} not written")
        if run_images is not None:
            from tlcli.deploy.quantization import quantize_int8

            result.quantized = quantize_int8(graph, target, preprocess=preprocess, embedded=embed_preprocessing, images=run_images,
                                             calibration_images=calibration_images, max_drop_points=max_accuracy_drop, metadata=metadata)
    return result


def _parity_images(checkpoint: dict, data: str | None, quantize: str):
    """The images the export is checked on, and for int8 the run's splits (read first: without
    them nothing is exported)."""
    if quantize != "int8":
        return None, _sample_images(data, checkpoint, PARITY_IMAGES)
    from tlcli.deploy.quantization import run_images as load_run_images

    run_images = load_run_images(checkpoint, data)
    return run_images, [run_images.test.load(i) for i in range(min(PARITY_IMAGES, len(run_images.test)))]


def _tta_parity(model: nn.Module, exported, inputs: torch.Tensor) -> tuple[float, float]:
    """The exported model against PyTorch (``model``: the network as exported, UInt8Input
    included) on predictions averaged over the test-time views of the same inputs, as ``predict
    --tta`` makes them: (max |probability difference|, top-1 agreement). With preprocessing
    embedded the views are rounded to uint8, which a checkpoint's views are not."""
    with torch.no_grad():
        reference = averaged_probabilities(lambda batch: model(batch).float().softmax(1), inputs)
    outputs = averaged_probabilities(lambda batch: torch.from_numpy(np.asarray(exported(batch))).float().softmax(1), inputs)
    return (outputs - reference).abs().max().item(), (outputs.argmax(1) == reference.argmax(1)).float().mean().item()


def _check_target(target: Path) -> None:
    """An export replaces only an earlier export: ``--out`` may name a user's file, a device or a link."""
    if not os.path.lexists(target):
        return
    if target.is_symlink() or not target.is_file():
        raise ExportError(f"{target} exists and is not a regular file (a link, a device, a FIFO or a folder): choose another --out")
    if not _is_tlcli_export(target):
        raise ExportError(f"{target} exists and is not a model tlcli exported: remove it yourself or choose another --out")


def _is_tlcli_export(path: Path) -> bool:
    if zipfile.is_zipfile(path):  # TorchScript: the extra files sit in the archive's extra/ folder
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/extra/tlcli.classes.json") for name in archive.namelist())
    try:
        import onnx

        return any(entry.key == "tlcli.classes" for entry in onnx.load(str(path), load_external_data=False).metadata_props)
    except Exception:  # not a readable ONNX model (onnx raises protobuf's and its own errors)
        return False


def _exported(model: nn.Module, inputs: torch.Tensor, target: Path, *, format: str, arch: str, **options):
    """The exported model's runner; the exporters' many failures become one ExportError."""
    try:
        if format == "onnx":
            return _export_onnx(model, inputs, target, **options)
        return _export_torchscript(model, inputs, target, metadata=options["metadata"])
    except TlcliError:
        raise
    except Exception as exc:  # exporters raise many kinds of errors for unsupported operators
        raise ExportError(f"cannot export {arch} to {format}: {str(exc).strip().splitlines()[0][:300]}") from None


def _export_onnx(model: nn.Module, example: torch.Tensor, target: Path, *, opset: int, dynamic_batch: bool, metadata: dict):
    import onnx

    try:
        import onnxruntime
    except ImportError:
        raise TlcliError("ONNX export needs the onnx extra: pip install 'tlcli[onnx]'") from None
    dynamic = ({0: torch.export.Dim("batch", min=1, max=1024)},) if dynamic_batch else None
    # The exporter writes its weights beside the graph, in a second file: both stay in a
    # scratch folder, and the output is one self-contained file.
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as scratch:
        exported = Path(scratch) / "model.onnx"
        # The exporter reports progress on stdout and warns about internals; neither is the user's business.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(exported), input_names=["input"], output_names=["logits"], opset_version=opset,
                              dynamic_shapes=dynamic, dynamo=True)
        graph = onnx.load(str(exported))
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    write_file_atomically(graph.SerializeToString(), target)
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch.numpy()})[0]


def _export_torchscript(model: nn.Module, example: torch.Tensor, target: Path, *, metadata: dict):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated upstream but still what many runtimes load
        traced = torch.jit.trace(model, example)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extra_files = {f"{key}.json": value for key, value in metadata.items()}
        write_atomically(target, lambda stream: torch.jit.save(traced, stream, _extra_files=extra_files))
        loaded = torch.jit.load(str(target))
    return lambda batch: loaded(batch).detach()
