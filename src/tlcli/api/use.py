"""The verbs that use a trained run: ``evaluate``, ``predict``, ``export`` and ``summary``."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

from tlcli.core.errors import ConfigError

OUTPUT_SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}


def evaluate(run: str | Path | None = None, *, data: str | None = None, split: str = "test", batch_size: int = 64, device: str = "auto",
             amp: str = "auto", workers: int | None = None, mistakes: int = 10, out: str | Path | None = None,
             image_column: str | None = None, label_column: str | None = None, image_dir: str | None = None, tta: bool = False):
    """Evaluate a run (folder, name, or checkpoint; default: the latest run's best.pt) on the
    held-out split it was trained beside, rebuilt exactly, or on other ``data``.

    Writes confusion matrices (PNG raw and normalised, CSV) and metrics.json to ``out`` (default:
    <run>/eval-<split>) and returns an EvaluationResult (``tta``: each prediction averaged over
    the image and three label-preserving views of it): ``.metrics.accuracy``, per-class
    precision/recall/F1, the train-val gap and the most confident mistakes; ``.to_dict()``.
    """
    from tlcli.evaluation.evaluate import evaluate_checkpoint

    columns = {"image_column": image_column, "label_column": label_column, "image_dir": image_dir}
    return evaluate_checkpoint(
        None if run is None else str(run), data=data, columns={name: value for name, value in columns.items() if value is not None},
        split=split, batch_size=batch_size, device=device, amp=amp, workers=workers, mistakes=mistakes,
        out=None if out is None else str(out), tta=tta)


class Predictions(list):
    """The predictions of ``tlcli.predict``, in input order (a list of Prediction), with the
    job's ``summary`` (the model used, images classified, unreadable ones)."""

    def __init__(self, predictions: Iterable = (), summary: Any = None):
        super().__init__(predictions)
        self.summary = summary

    def to_dict(self) -> dict[str, Any]:
        return {"source": str(self.summary.source) if self.summary else None, "predictions": [p.to_dict() for p in self]}

    def __repr__(self) -> str:
        shown = ", ".join(f"{p.path}: {p.top[0][0]} {p.top[0][1]:.3f}" if p.top else f"{p.path}: {p.error}" for p in self[:3])
        more = f", ... {len(self) - 3} more" if len(self) > 3 else ""
        return f"Predictions([{shown}{more}])"


def predict(images, *, checkpoint: str | Path | None = None, model: str | Path | None = None, topk: int = 5, device: str = "auto",
            batch_size: int = 32, workers: int | None = None, from_list: str | None = None, output: str | Path | TextIO | None = None,
            format: str | None = None, resume: bool = False, on_batch: Callable[[list], None] | None = None, tta: bool = False) -> Predictions:
    """Classify images with a checkpoint (default: the latest run's best.pt) or an exported ONNX ``model``.

    ``images``: one or a list of image files, folders (every image below, sorted), globs, PIL
    images or tensors (an image: C x H x W, uint8 or float in [0, 1]); each is preprocessed as the
    run was trained. Files are decoded by ``workers`` processes while the model runs.

    Returns Predictions, a list of Prediction (``.path``, ``.label``, ``.probability``, ``.top``:
    the ``topk`` (class, probability) pairs; ``.error`` for an unreadable file). With ``output``
    (a file, or a text stream such as sys.stdout) the rows are written there batch by batch in
    ``format`` (csv | jsonl | json; a file's suffix tells it) instead of kept; ``resume`` skips
    the images an output file already holds. ``on_batch`` receives each batch as it is done.
    ``tta`` averages each prediction over the image and three label-preserving views of it.
    """
    from PIL import Image

    if checkpoint is not None and model is not None:
        raise ConfigError("give a checkpoint or an ONNX model, not both")
    if output == "-":
        output = sys.stdout
    if resume and not isinstance(output, (str, Path)):
        raise ConfigError("resume continues an output file: give it as output")
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    in_memory = [item for item in items if not isinstance(item, (str, Path))]
    if in_memory and (len(in_memory) < len(items) or from_list is not None or output is not None):
        raise ConfigError("predict takes either paths (files, folders, globs) or images in memory (PIL images, tensors), not both, "
                          "and writes only the results of paths to an output")
    from tlcli.prediction import predict as run_predict
    from tlcli.prediction import predict_images

    checkpoint, model = None if checkpoint is None else str(checkpoint), None if model is None else Path(model)
    if in_memory:
        return Predictions(*predict_images([_as_image(item, Image) for item in in_memory], checkpoint=checkpoint, model_file=model, topk=topk,
                                           device=device, batch_size=batch_size, on_batch=on_batch or (lambda batch: None), tta=tta))

    kept: list = []
    stream = output if output is not None and not isinstance(output, (str, Path)) else None
    path = Path(output) if isinstance(output, (str, Path)) else None
    chosen = format or (OUTPUT_SUFFIX_FORMATS.get(path.suffix.lower()) if path else None) or ("csv" if output is not None else "table")
    if path is not None and chosen not in ("csv", "jsonl", "json"):
        raise ConfigError(f"say the format of {path}: format='csv', 'jsonl' or 'json' (or name it .csv, .jsonl or .json)")

    def batch_done(batch: list) -> None:
        if output is None:
            kept.extend(batch)
        if on_batch is not None:
            on_batch(batch)

    summary = run_predict([str(item) for item in items], checkpoint=checkpoint, model_file=model, topk=topk, device=device, batch_size=batch_size,
                          workers=workers, from_list=from_list, format=chosen, output=path, stream=stream, resume=resume,
                          on_batch=batch_done, tta=tta)
    return Predictions(kept, summary)


def _as_image(item, image_module):
    import torch
    from torchvision.transforms.functional import to_pil_image

    if isinstance(item, image_module.Image):
        return item
    if isinstance(item, torch.Tensor) and item.dim() == 3:
        return to_pil_image(item)
    raise ConfigError(f"predict takes image paths, PIL images or C x H x W tensors; got {type(item).__name__}"
                      + (f" of shape {tuple(item.shape)}" if hasattr(item, "shape") else ""))


def export(run: str | Path | None = None, *, format: str = "onnx", out: str | Path | None = None, opset: int = 18,
           dynamic_batch: bool = True, embed_preprocessing: bool = False, data: str | None = None, quantize: str = "none",
           calibration_images: int = 256, max_accuracy_drop: float = 1.0, tta: bool = False):
    """Export a run's model (default: the latest run's best.pt) to ONNX or TorchScript, with its
    classes and preprocessing inside, and check that it agrees with PyTorch.

    quantize="int8": onnxruntime's static int8 quantization, calibrated on ``calibration_images``
    of the run's training images and refused (nothing written) when it loses more than
    ``max_accuracy_drop`` points of test accuracy. Returns an ExportResult (``.path``,
    ``.passed``, ``.max_abs_diff``, ``.quantized``). ``tta``: parity is also checked on the
    predictions averaged over predict's test-time views.
    """
    from tlcli.deploy.exporting import export_checkpoint

    int8_defaults = (export.__kwdefaults__["calibration_images"], export.__kwdefaults__["max_accuracy_drop"])
    if quantize == "none" and (calibration_images, max_accuracy_drop) != int8_defaults:
        raise ConfigError("calibration_images and max_accuracy_drop are for quantize='int8'")
    return export_checkpoint(None if run is None else str(run), format=format, out=None if out is None else Path(out), opset=opset,
                             dynamic_batch=dynamic_batch, embed_preprocessing=embed_preprocessing, data=data, quantize=quantize,
                             calibration_images=calibration_images, max_accuracy_drop=max_accuracy_drop, tta=tta)


@dataclass
class ModelOverview:
    """``tlcli.summary``'s result: the torchinfo table (``str()`` of it) and what the model is."""

    arch: str
    num_classes: int
    freeze: str
    model: dict[str, Any]
    preprocess: dict[str, Any]
    summary: Any  # tlcli.models.summary.ModelSummary
    source: Path | None = None  # the checkpoint shown, if any
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "freeze": self.freeze, "preprocess": self.preprocess, **self.summary.to_dict()}

    def __str__(self) -> str:
        return self.summary.table

    def __repr__(self) -> str:
        return (f"ModelOverview({self.arch}, {self.num_classes} classes, freeze '{self.freeze}', "
                f"{self.summary.trainable_params:,} of {self.summary.total_params:,} parameters trainable)")


def summary(run: str | Path | None = None, *, arch: str | None = None, depth: int = 3, **model_options: Any) -> ModelOverview:
    """A model's layers, shapes, parameter counts and which of them train (torchinfo's table).

    With ``arch`` no weights are read: the architecture with its new head and freeze policy
    (``num_classes``, ``weights``, ``dropout``, ``hidden``, ``freeze``, ``bn_train``,
    ``input_size`` as in train). With a ``run`` (or neither, when a run exists) the model as saved.
    """
    from tlcli.api.options import train_config
    from tlcli.run.checkpoint import load_checkpoint, model_from_checkpoint
    from tlcli.core.config import DEFAULT_ARCH, TRAIN_OPTIONS
    from tlcli.core.errors import CheckpointError
    from tlcli.models.summary import summarize_architecture, summarize_built
    from tlcli.run.locate import checkpoints_root, resolve_checkpoint

    allowed = {name for name, (section, _, _) in TRAIN_OPTIONS.items() if section == "model" and name != "arch"}
    if set(model_options) - allowed:
        from tlcli.api.options import unknown_option

        raise unknown_option(sorted(set(model_options) - allowed)[0], ["arch", "depth", *sorted(allowed)])
    if run is not None and (arch is not None or model_options):
        raise ConfigError("summary shows a saved run as it is, or an architecture with options, not both")
    config = train_config(**({"arch": arch} if arch else {}), **model_options).model
    path, notes = None, []
    if run is not None:
        path = resolve_checkpoint(str(run))
    elif arch is None and not model_options:
        try:
            path = resolve_checkpoint(None)
        except CheckpointError:
            notes.append(f"no run in {checkpoints_root()} yet: showing {DEFAULT_ARCH} with its ImageNet head")
    if path is not None:
        built = model_from_checkpoint(load_checkpoint(path))
        table = summarize_built(built, depth)
    else:
        built, table = summarize_architecture(config, depth=depth)
    return ModelOverview(built.arch, built.num_classes, built.freeze_policy, built.describe(), built.preprocess.to_dict(), table, path, notes)
