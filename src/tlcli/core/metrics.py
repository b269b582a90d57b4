"""Classification metrics from logits and labels, as plain numbers and lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# The reports' reading of the train - val accuracy gap (CIFAR-10: 0.196 over-fits, 0.010 is fine).
OVERFIT_GAP = 0.10
# Below this training accuracy a small gap means the model has not learned enough yet.
UNDERFIT_TRAIN_ACC = 0.60


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return (top == labels[:, None]).any(dim=1).float().mean().item()


def fit_verdict(train_acc: float, val_acc: float) -> str:
    gap = train_acc - val_acc
    if gap > OVERFIT_GAP:
        return "over-fitting"
    if train_acc < UNDERFIT_TRAIN_ACC:
        return "under-fitting"
    return "balanced"


@dataclass
class ClassificationMetrics:
    accuracy: float
    topk: dict[int, float]
    precision_macro: float
    recall_macro: float
    f1_macro: float
    precision_weighted: float
    recall_weighted: float
    f1_weighted: float
    per_class: list[dict[str, Any]]
    confusion: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "topk_accuracy": {str(k): v for k, v in self.topk.items()},
            "precision_macro": self.precision_macro,
            "recall_macro": self.recall_macro,
            "f1_macro": self.f1_macro,
            "precision_weighted": self.precision_weighted,
            "recall_weighted": self.recall_weighted,
            "f1_weighted": self.f1_weighted,
            "per_class": self.per_class,
            "confusion_matrix": self.confusion.tolist(),
        }


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, classes: list[str], *, k: int = 5) -> ClassificationMetrics:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    predicted = logits.argmax(1).numpy()
    truth = labels.numpy()
    everything = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=everything, zero_division=0)
    weighted = precision_recall_fscore_support(truth, predicted, labels=everything, average="weighted", zero_division=0)
    present = support > 0  # macro averages over the classes this split contains
    per_class = [
        {"class": name, "precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(classes)
    ]
    return ClassificationMetrics(
        accuracy=float((predicted == truth).mean()),
        topk={kk: topk_accuracy(logits, labels, kk) for kk in sorted({1, min(k, len(classes))})},
        precision_macro=float(precision[present].mean()),
        recall_macro=float(recall[present].mean()),
        f1_macro=float(f1[present].mean()),
        precision_weighted=float(weighted[0]),
        recall_weighted=float(weighted[1]),
        f1_weighted=float(weighted[2]),
        per_class=per_class,
        confusion=confusion_matrix(truth, predicted, labels=everything),
    )
