"""``predict``: classify image files with a checkpoint, applying the preprocessing it trained with."""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tlcli.checkpoint import load_checkpoint, model_from_checkpoint
from tlcli.data.images import BadImageError, has_image_extension, is_hidden, load_image
from tlcli.data.transforms import build_transform
from tlcli.engine.device import resolve_device
from tlcli.errors import TlcliError
from tlcli.runs import resolve_checkpoint


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (class, probability), most likely first; empty on error
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "predictions": [{"label": label, "probability": p} for label, p in self.top],
            "error": self.error,
        }


def expand_inputs(inputs: list[str]) -> tuple[list[Path], list[Prediction]]:
    """Files, folders (every image below) and globs, in order; what matches nothing is an error entry."""
    found: list[Path] = []
    missing: list[Prediction] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images = sorted(
                p for p in path.rglob("*")
                if p.is_file() and has_image_extension(p) and not any(is_hidden(part) for part in p.relative_to(path).parts)
            )
            found += images
            if not images:
                missing.append(Prediction(item, [], "no image files in this folder"))
        elif path.is_file():
            found.append(path)
        elif any(c in item for c in "*?["):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file())
            found += matches
            if not matches:
                missing.append(Prediction(item, [], "no file matches this pattern"))
        else:
            missing.append(Prediction(item, [], "no such file or folder"))
    return found, missing


class TorchClassifier:
    def __init__(self, checkpoint: str | None, device: str):
        self.source = resolve_checkpoint(checkpoint)
        state = load_checkpoint(self.source)
        built = model_from_checkpoint(state)
        self.classes = state["classes"]
        self.device = resolve_device(device)
        self.model = built.model.to(self.device).eval()
        self.transform = build_transform(built.preprocess)
        self.draft_size = built.preprocess.resize_size

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch.to(self.device)).float().softmax(1).cpu()


class OnnxClassifier:
    """An exported model run by onnxruntime, with the preprocessing stored in its metadata."""

    def __init__(self, path: Path):
        from tlcli.data.transforms import Preprocess

        try:
            import onnxruntime
        except ImportError:
            raise TlcliError("ONNX models need the onnx extra: pip install 'tlcli[onnx]'") from None
        if not path.is_file():
            raise TlcliError(f"model file {path} does not exist")
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            raise TlcliError(f"{path} is not a readable ONNX model ({str(exc).strip().splitlines()[0][:200]})") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        if "tlcli.classes" not in metadata or "tlcli.preprocess" not in metadata:
            raise TlcliError(f"{path} was not exported by tlcli: it carries no classes or preprocessing")
        self.source = path
        self.classes = json.loads(metadata["tlcli.classes"])
        preprocess = Preprocess.from_dict(json.loads(metadata["tlcli.preprocess"]))
        self.transform = build_transform(preprocess, normalize=metadata.get("tlcli.input") != "uint8")
        self.draft_size = preprocess.resize_size
        self.input = self.session.get_inputs()[0].name

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.input: batch.numpy()})[0]).float().softmax(1)


def load_classifier(checkpoint: str | None, *, model_file: Path | None = None, device: str = "auto"):
    """A callable batch -> probabilities with ``classes``, ``transform`` and ``source``: PyTorch or ONNX."""
    if model_file is None and checkpoint is not None and checkpoint.endswith(".onnx"):
        model_file = Path(checkpoint)
    return OnnxClassifier(model_file) if model_file is not None else TorchClassifier(checkpoint, device)


def predict(
    inputs: list[str],
    *,
    checkpoint: str | None = None,
    model_file: Path | None = None,
    topk: int = 5,
    device: str = "auto",
    batch_size: int = 32,
) -> tuple[Path, list[Prediction]]:
    """Returns the checkpoint or model used and one Prediction per input image, failures included."""
    if topk < 1:
        raise TlcliError(f"top-k must be at least 1, got {topk}")
    files, results = expand_inputs(inputs)
    if not files:  # checked before the model loads: nothing to classify is an error, not an empty table
        raise TlcliError("no images to predict: " + ("; ".join(f"{r.path}: {r.error}" for r in results) or "none given"))
    classifier = load_classifier(checkpoint, model_file=model_file, device=device)
    classes = classifier.classes
    k = min(topk, len(classes))
    by_path: dict[Path, Prediction] = {}
    batch: list[tuple[Path, torch.Tensor]] = []

    def flush() -> None:
        values, indices = classifier(torch.stack([t for _, t in batch])).topk(k, dim=1)
        for (file, _), row_values, row_indices in zip(batch, values, indices):
            by_path[file] = Prediction(str(file), [(classes[int(i)], float(v)) for v, i in zip(row_values, row_indices)])
        batch.clear()

    for file in files:
        try:
            batch.append((file, classifier.transform(load_image(file, draft_size=classifier.draft_size))))
        except BadImageError as exc:
            by_path[file] = Prediction(str(file), [], str(exc))
        except OSError as exc:
            by_path[file] = Prediction(str(file), [], f"cannot be read: {exc.strerror or exc}")
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return classifier.source, [by_path[file] for file in files] + results
