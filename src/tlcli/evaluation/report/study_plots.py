"""The beans report's six comparison figures, drawn from a study's runs.

With folds, the curves show each configuration's first fold and the bars show fold means with
their standard deviation as error bars.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from matplotlib.ticker import MaxNLocator

from tlcli.core.plots import pyplot


def _first_fold(runs):
    seen, first = set(), []
    for run in runs:
        if run.name not in seen:
            seen.add(run.name)
            first.append(run)
    return first


def _title(axis, text: str, subtitle: str) -> None:
    """The figure's title, with the study's shared options wrapped below it in small print."""
    axis.figure.suptitle(text, fontsize=11)
    if subtitle:
        width = max(40, int(axis.figure.get_figwidth() * 12))
        axis.set_title(textwrap.fill(subtitle, width), fontsize=7, color="#555")


def _save(figure, path: Path, plt) -> str:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return str(path)


def _curves(runs, out: Path, plt, *, metric: str, label: str, title: str, subtitle: str) -> str:
    figure, axis = plt.subplots(figsize=(9, 5))
    for index, run in enumerate(runs):
        color = f"C{index % 10}"
        epochs = [row["epoch"] for row in run.history]
        axis.plot(epochs, [row[f"train_{metric}"] for row in run.history], "--", color=color, label=f"{run.name} train")
        axis.plot(epochs, [row[f"val_{metric}"] for row in run.history], "-", color=color, label=f"{run.name} val")
    axis.set_xlabel("epoch")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_ylabel(label)
    _title(axis, title, subtitle)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, ncol=2)
    return _save(figure, out, plt)


def _bars(table, out: Path, plt, *, key: str, label: str, title: str, subtitle: str) -> str:
    figure, axis = plt.subplots(figsize=(max(7, 1.2 * len(table)), 4.5))
    names = [row["name"] for row in table]
    values = [row[key] if row.get(key) is not None else 0.0 for row in table]
    errors = [row.get(f"{key}_std", 0.0) or 0.0 for row in table]
    bars = axis.bar(names, values, yerr=errors if any(errors) else None, capsize=4, color=[f"C{i % 10}" for i in range(len(names))],
                    label=names)
    axis.bar_label(bars, labels=[f"{v:.3g}" for v in values], fontsize=8)
    axis.legend(fontsize=8, loc="lower right")
    axis.set_xlabel("configuration")
    axis.set_ylabel(label)
    _title(axis, title, subtitle)
    axis.tick_params(axis="x", rotation=30)
    return _save(figure, out, plt)


def plot_study(runs, table, out_dir: Path, *, title: str = "") -> dict[str, str]:
    plt = pyplot()
    curves = _first_fold(runs)
    subtitle = title
    figures = {
        "accuracy.png": _curves(curves, out_dir / "accuracy.png", plt, metric="acc", label="accuracy", title="Accuracy per epoch, train (dashed) vs val", subtitle=subtitle),
        "loss.png": _curves(curves, out_dir / "loss.png", plt, metric="loss", label="loss", title="Loss per epoch, train (dashed) vs val", subtitle=subtitle),
    }
    figure, axis = plt.subplots(figsize=(9, 5))
    for index, run in enumerate(curves):
        axis.plot([r["epoch"] for r in run.history], [r["train_acc"] - r["val_acc"] for r in run.history], "o-", markersize=3,
                  color=f"C{index % 10}", label=run.name)
    axis.axhline(0.10, color="grey", linestyle="--", linewidth=1, label="over-fitting threshold")
    axis.set_xlabel("epoch")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_ylabel("train - val accuracy")
    _title(axis, "Over-fitting gap per epoch", subtitle)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figures["overfitting_gap.png"] = _save(figure, out_dir / "overfitting_gap.png", plt)
    figures["convergence.png"] = _bars(
        table, out_dir / "convergence.png", plt, key="convergence_epoch", label="epoch",
        title="Epochs to reach 95 % of the best val accuracy", subtitle=subtitle,
    )
    figure, axis = plt.subplots(figsize=(8, 5))
    for index, row in enumerate(table):
        axis.scatter(row["trainable"], row["seconds"], s=60, color=f"C{index % 10}", label=row["name"])
        axis.annotate(row["name"], (row["trainable"], row["seconds"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    axis.set_xlabel("trainable parameters")
    axis.set_ylabel("training time (s)")
    _title(axis, "Trainable parameters vs training time", subtitle)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figures["params_vs_time.png"] = _save(figure, out_dir / "params_vs_time.png", plt)
    figures["test_accuracy.png"] = _bars(
        table, out_dir / "test_accuracy.png", plt, key="test_acc", label="test accuracy", title="Test accuracy per configuration", subtitle=subtitle
    )
    return figures
