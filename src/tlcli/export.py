"""``export``: a checkpoint as ONNX or TorchScript that predicts exactly what PyTorch predicts.

The class names and the preprocessing travel inside the exported file (ONNX ``metadata_props``,
TorchScript extra files), and every export is checked against the PyTorch model on real or
generated images before it is reported a success.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tlcli import __version__
from tlcli.checkpoint import load_checkpoint, model_from_checkpoint
from tlcli.data.transforms import Preprocess, build_transform
from tlcli.errors import TlcliError
from tlcli.files import write_atomically, write_file_atomically
from tlcli.models.inputs import UInt8Input

FORMATS = ("onnx", "torchscript")
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

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= PARITY_TOLERANCE and self.top1_agreement == 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "format": self.format, "passed": self.passed,
            "parity": {"images": self.images, "max_abs_logit_diff": self.max_abs_diff, "top1_agreement": self.top1_agreement,
                       "tolerance": PARITY_TOLERANCE},
            "embedded_preprocessing": self.embedded_preprocessing,
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

        from tlcli.config import TrainConfig
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
) -> ExportResult:
    from tlcli.runs import resolve_checkpoint

    if format not in FORMATS:
        raise TlcliError(f"unknown format '{format}'; choose one of {', '.join(FORMATS)}")
    path = resolve_checkpoint(spec)
    checkpoint = load_checkpoint(path)
    built = model_from_checkpoint(checkpoint)
    model = built.model.eval()
    preprocess = built.preprocess
    target = Path(out) if out else path.with_suffix(".onnx" if format == "onnx" else ".torchscript.pt")
    wrapped = UInt8Input(model, preprocess).eval() if embed_preprocessing else model
    images = _sample_images(data, checkpoint, PARITY_IMAGES)
    # The reference is PyTorch fed by the real transform, exactly as `tlcli predict` does it.
    normalised = torch.stack([build_transform(preprocess)(image) for image in images])
    inputs = _parity_batch(preprocess, images) if embed_preprocessing else normalised
    metadata = metadata_for(checkpoint, embedded=embed_preprocessing)
    with torch.no_grad():
        reference = model(normalised)
    try:
        if format == "onnx":
            exported = _export_onnx(wrapped, inputs, target, opset=opset, dynamic_batch=dynamic_batch, metadata=metadata)
        else:
            exported = _export_torchscript(wrapped, inputs, target, metadata=metadata)
    except TlcliError:
        raise
    except Exception as exc:  # exporters raise many kinds of errors for unsupported operators
        raise ExportError(f"cannot export {built.arch} to {format}: {str(exc).strip().splitlines()[0][:300]}") from None
    outputs = torch.from_numpy(np.asarray(exported(inputs)))
    difference = (outputs - reference).abs().max().item()
    agreement = (outputs.argmax(1) == reference.argmax(1)).float().mean().item()
    return ExportResult(target, format, difference, agreement, len(images), embed_preprocessing, metadata)


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
