"""``evaluate``: a checkpoint on a split it never trained on, rebuilt exactly as training made it."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from tlcli.run.checkpoint import load_checkpoint, model_from_checkpoint
from tlcli.core.config import TrainConfig
from tlcli.data.dataset import SPLITS, ImageData
from tlcli.data.loading import TransformedImages, make_loader
from tlcli.data.sources import load_data, resolve_folder
from tlcli.data.transforms import build_transform
from tlcli.engine.device import default_workers, resolve_device, resolve_precision
from tlcli.engine.distributed import local_device, on_main, process_group
from tlcli.engine.tta import Averaged
from tlcli.engine.loop import evaluate
from tlcli.core.errors import ConfigError, DataError
from tlcli.core.metrics import ClassificationMetrics, classification_metrics, fit_verdict
from tlcli.core.plots import plot_confusion
from tlcli.run.marker import foreign_checkpoint
from tlcli.run.locate import resolve_checkpoint


@dataclass
class EvaluationResult:
    checkpoint: Path
    split: str
    data: str
    images: int
    loss: float
    metrics: ClassificationMetrics
    fit: dict[str, Any] | None  # train - val accuracy gap at the checkpoint's last epoch, and its reading
    mistakes: list[dict[str, Any]]  # the most confidently wrong predictions
    folder: str = ""  # where the figures and metrics.json went
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tta: bool = False  # the predictions are averaged over engine.tta.VIEWS

    def __repr__(self) -> str:
        return (f"EvaluationResult('{self.checkpoint}' on {self.data} [{self.split}], {self.images} images: "
                f"accuracy {self.metrics.accuracy:.4f}, macro F1 {self.metrics.f1_macro:.4f}, loss {self.loss:.4f})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint),
            "split": self.split,
            "data": self.data,
            "images": self.images,
            "loss": self.loss,
            **self.metrics.to_dict(),
            "fit": self.fit,
            "most_confident_mistakes": self.mistakes,
            "folder": self.folder,
            "files": self.files,
            "notes": self.notes,
            "tta": self.tta,
        }


def label_map(data: ImageData, classes: list[str]) -> list[int]:
    """The checkpoint's class index of each of the data's labels; a class it does not know is an error."""
    unknown = [name for name in data.classes if name not in classes]
    if unknown:
        raise DataError(
            f"the data has classes the checkpoint does not know: {', '.join(unknown[:10])}"
            + (" ..." if len(unknown) > 10 else "")
            + f" (the checkpoint knows {len(classes)}: {', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''})"
        )
    return [classes.index(name) for name in data.classes]


def _fit_gap(history: list[dict]) -> dict[str, Any] | None:
    if not history or history[-1]["val_acc"] != history[-1]["val_acc"]:  # NaN: no validation split
        return None
    last = history[-1]
    gap = last["train_acc"] - last["val_acc"]
    return {"epoch": last["epoch"], "train_acc": last["train_acc"], "val_acc": last["val_acc"], "gap": gap,
            "verdict": fit_verdict(last["train_acc"], last["val_acc"])}


def _same_source(other: str, trained: str) -> bool:
    """Whether ``--data`` names the data the checkpoint trained on, however its path is spelled."""
    if other == trained:
        return True
    mine, theirs = resolve_folder(other), resolve_folder(trained)
    return mine is not None and theirs is not None and mine.resolve() == theirs.resolve()


def _default_folder(run: Path, split: str, other: str | None) -> Path:
    """``eval-<split>`` for the checkpoint's own data; other data gets ``eval-<its name>-<split>``,
    so that evaluating elsewhere never overwrites the run's own metrics."""
    if other is None:
        return run / f"eval-{split}"
    folder = resolve_folder(other)
    name = folder.resolve().name if folder is not None else Path(other).name
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "data"
    return run / f"eval-{name}-{split}"


def _write_outputs(out: Path, result: EvaluationResult, classes: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    result.folder = str(out)
    matrix = result.metrics.confusion
    with np.errstate(invalid="ignore", divide="ignore"):
        normalized = np.nan_to_num(matrix / matrix.sum(axis=1, keepdims=True))
    title = f"{result.split} split, {result.images} images, accuracy {result.metrics.accuracy:.3f}"
    files = {
        "confusion_matrix.png": plot_confusion(matrix, classes, out / "confusion_matrix.png", normalized=False, title=f"Confusion matrix: {title}"),
        "confusion_matrix_normalized.png": plot_confusion(
            normalized, classes, out / "confusion_matrix_normalized.png", normalized=True, title=f"Normalised by true class: {title}"
        ),
    }
    with open(out / "confusion_matrix.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["true \\ predicted", *classes])
        writer.writerows([name, *map(int, row)] for name, row in zip(classes, matrix))
    files["confusion_matrix.csv"] = out / "confusion_matrix.csv"
    result.files = {name: str(path) for name, path in files.items()}
    result.files["metrics.json"] = str(out / "metrics.json")
    (out / "metrics.json").write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")


def evaluate_checkpoint(spec: str | None, *, device: str = "auto", **options) -> EvaluationResult:
    """Under torchrun, each process evaluates its shard of the split (``--batch-size`` images
    at a time), the results are gathered, and rank 0 writes the figures and metrics."""
    with process_group(device):
        return _evaluate_checkpoint(spec, device=device, **options)


def _confident_mistakes(passed, images, classes: list[str], count: int) -> list[dict]:
    """The ``count`` wrong predictions made with the highest confidence, most confident first."""
    confidence, predicted = passed.logits.softmax(1).max(1)
    wrong = (predicted != passed.labels).nonzero().flatten()
    return [{"image": images.name(int(passed.indices[i])), "true": classes[int(passed.labels[i])],
             "predicted": classes[int(predicted[i])], "confidence": float(confidence[i])}
            for i in wrong[confidence[wrong].argsort(descending=True)][:count]]


def _evaluate_checkpoint(
    spec: str | None,
    *,
    data: str | None = None,
    columns: dict[str, str] | None = None,
    split: str = "test",
    batch_size: int = 64,
    device: str = "auto",
    amp: str = "auto",
    workers: int | None = None,
    mistakes: int = 10,
    out: str | None = None,
    tta: bool = False,
) -> EvaluationResult:
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}'; choose one of {', '.join(SPLITS)}")
    path = resolve_checkpoint(spec)
    checkpoint = load_checkpoint(path)
    config = TrainConfig.from_dict(checkpoint["config"])
    # columns: image_column, label_column, image_dir, for data whose columns differ from training's.
    data_config = replace(config.data, **({"source": data} if data else {}), **(columns or {}))
    dataset = load_data(data_config)
    notes = [*filter(None, [foreign_checkpoint(path, checkpoint)]), *dataset.notes]
    recorded = checkpoint["data"]["split"].get("fingerprints", {}).get(split)
    same_source = data is None or _same_source(data, config.data.source)
    if same_source and recorded and dataset.split_info.get("fingerprints", {}).get(split) != recorded:
        notes.append(f"the {split} files differ from those at training time: the data changed since")
    images = dataset.splits[split]
    if not len(images):
        raise DataError(f"the {split} split of {dataset.source} has no images; choose another split")
    classes = checkpoint["classes"]
    built = model_from_checkpoint(checkpoint)
    torch_device = local_device(resolve_device(device))
    precision = resolve_precision(amp, torch_device)
    model = built.model.to(torch_device)
    loader = make_loader(
        TransformedImages(images, build_transform(built.preprocess), label_map(dataset, classes), draft_size=built.preprocess.resize_size),
        batch_size=batch_size, shuffle=False, workers=default_workers() if workers is None else workers, seed=0, persistent=False,
    )
    passed = evaluate(Averaged(model) if tta else model, loader, nn.CrossEntropyLoss().to(torch_device), device=torch_device, precision=precision, collect=True)
    notes += [f"skipped unreadable image {s}" for s in passed.skipped]
    if passed.logits is None:
        raise DataError(f"none of the {len(images)} images of the {split} split could be read")
    metrics = classification_metrics(passed.logits, passed.labels, classes)
    result = EvaluationResult(path, split, dataset.source, passed.images, passed.loss, metrics, _fit_gap(checkpoint["history"]),
                              _confident_mistakes(passed, images, classes, mistakes), notes=notes, tta=tta)
    folder = Path(out) if out else _default_folder(path.parent, split, None if same_source else data)
    on_main(lambda: _write_outputs(folder, result, classes))
    return result
