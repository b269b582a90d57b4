"""PNG figures, drawn with matplotlib's file-only backend (no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    # Every text in tlcli's figures is literal: a run or class name between $ signs would
    # otherwise be read as mathtext, and one it cannot parse fails the whole figure.
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict], path: Path, *, title: str = "") -> Path:
    """Loss and accuracy per epoch, train vs val, with the start of each phase marked."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, metric, label in ((axes[0], "loss", "Loss"), (axes[1], "acc", "Accuracy")):
        axis.plot(epochs, [row[f"train_{metric}"] for row in history], "o-", label=f"train {metric}", markersize=3)
        val = [row[f"val_{metric}"] for row in history]
        if any(not math.isnan(v) for v in val):
            axis.plot(epochs, val, "s-", label=f"val {metric}", markersize=3)
        phases = sorted({row["phase"] for row in history})
        for phase in phases[1:]:
            start = min(row["epoch"] for row in history if row["phase"] == phase)
            axis.axvline(start - 0.5, color="grey", linestyle="--", linewidth=1)
            axis.text(start - 0.4, axis.get_ylim()[1], f"phase {phase}", va="top", fontsize=8, color="grey")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(label)
        axis.set_title(f"{label}: train vs val")
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_confusion(matrix: np.ndarray, classes: list[str], path: Path, *, normalized: bool, title: str) -> Path:
    plt = pyplot()
    size = max(5.0, min(0.45 * len(classes) + 2, 30.0))
    figure, axis = plt.subplots(figsize=(size, size * 0.85))
    image = axis.imshow(matrix, cmap="Blues", vmin=0, vmax=1 if normalized else None)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    ticks = np.arange(len(classes))
    axis.set_xticks(ticks, classes, rotation=90 if len(classes) > 10 else 45, ha="right" if len(classes) <= 10 else "center")
    axis.set_yticks(ticks, classes)
    if len(classes) <= 30:
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(len(classes)):
            for j in range(len(classes)):
                text = f"{matrix[i, j]:.2f}" if normalized else str(int(matrix[i, j]))
                axis.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if matrix[i, j] > threshold else "black")
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_lr_find(lrs: list[float], losses: list[float], suggested: float, path: Path, *, title: str = "") -> Path:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(8, 4.5))
    axis.plot(lrs, losses, label="smoothed training loss")
    axis.axvline(suggested, color="C3", linestyle="--", label=f"suggested lr {suggested:.2e}")
    axis.set_xscale("log")
    axis.set_xlabel("learning rate (log scale)")
    axis.set_ylabel("loss")
    axis.set_title(f"Learning-rate range test\n{title}" if title else "Learning-rate range test", fontsize=10)
    axis.grid(alpha=0.3, which="both")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
