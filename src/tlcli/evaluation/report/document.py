"""``tlcli report``: what the reports' authors wrote by hand, as report.md and report.html.

A report is a list of blocks (headings, text, tables, images, code) rendered twice: Markdown
next to the run with relative image links, and one self-contained HTML file with the images
embedded, to mail or open anywhere.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tlcli.core.errors import TlcliError

# How many off-diagonal confusion-matrix cells to list as the most confused pairs.
CONFUSED_PAIRS = 5


@dataclass
class Block:
    kind: str  # heading | text | table | image | code
    content: Any
    level: int = 2


def _table(header: list[str], rows: list[list[Any]]) -> Block:
    return Block("table", (header, [[str(cell) for cell in row] for row in rows]))


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _run_blocks(run_dir: Path) -> list[Block]:
    from tlcli.run.checkpoint import load_checkpoint, model_from_checkpoint
    from tlcli.evaluation.evaluate import evaluate_checkpoint
    from tlcli.models.summary import summarize_built
    from tlcli.run.marker import foreign_checkpoint

    best = run_dir / "best.pt"
    checkpoint = load_checkpoint(best)
    config, data = checkpoint["config"], checkpoint["data"]
    counts = data["counts"]
    split = "test" if sum(counts.get("test", {}).values()) else "val"
    evaluation = evaluate_checkpoint(str(best), split=split)
    metrics = evaluation.metrics
    warnings = [Block("text", f"**Warning:** {foreign}.")] if (foreign := foreign_checkpoint(best, checkpoint)) else []
    history = checkpoint["history"]
    fit = evaluation.fit or {}
    totals = {name: sum(counts[s][name] for s in counts) for name in checkpoint["classes"]}
    imbalance = max(totals.values()) / min(totals.values()) if min(totals.values()) else float("inf")
    arch = checkpoint["model"]["arch"]
    blocks = [
        Block("heading", f"{arch} on {data['source']}", 1),
        *warnings,
        Block("heading", "TL;DR"),
        Block("text", (
            f"{arch} ({checkpoint['model']['weights']} weights, freeze policy '{checkpoint['freeze']['policy']}', phase {checkpoint['phase']}) "
            f"reached **{metrics.accuracy:.1%} {split} accuracy** (macro F1 {metrics.f1_macro:.3f}) on {evaluation.images} held-out images "
            f"after {len(history)} epochs; best epoch {len(history) - checkpoint['progress']['epoch'] + checkpoint['progress']['best_epoch']}. "
            + (f"Train - val accuracy gap {fit['gap']:+.3f}: {fit['verdict']}." if fit else "")
        )),
        Block("heading", "Data set"),
        Block("text", f"Source `{data['source']}` ({data['kind']}), {len(checkpoint['classes'])} classes, split: {data['split'].get('method')}"
                      f"{', seed ' + str(data['split']['seed']) if 'seed' in data['split'] else ''}; imbalance ratio (largest / smallest class) {imbalance:.2f}."),
        _table(["split", "images"], [[s, sum(c.values())] for s, c in counts.items()]),
        Block("heading", "Model"),
        Block("code", summarize_built(model_from_checkpoint(checkpoint)).table),
        Block("heading", "Configuration"),
        _table(["option", "value"], [[f"{group}.{key}", value] for group in ("data", "model", "augment", "optim", "run")
                                     for key, value in config[group].items()]),
        Block("heading", "Learning curves"),
        Block("image", run_dir / "curves.png"),
        _table(["phase", "epoch", "train loss", "train acc", "val loss", "val acc", "lr", "seconds"],
               [[r["phase"], r["epoch"], _fmt(r["train_loss"]), _fmt(r["train_acc"]), _fmt(r["val_loss"]), _fmt(r["val_acc"]),
                 f"{r['lr']:.3g}", _fmt(r["seconds"], 1)] for r in history]),
        *_metric_blocks(evaluation, split),
        Block("heading", "Confusion matrix"),
        Block("image", Path(evaluation.files["confusion_matrix_normalized.png"])),
        Block("heading", "Most confused pairs"),
        _table(["true", "predicted as", "images"], _confused_pairs(metrics.confusion, checkpoint["classes"])),
    ]
    if evaluation.mistakes:
        blocks += [Block("heading", "Most confident mistakes"),
                   _table(["image", "true", "predicted", "confidence"],
                          [[m["image"], m["true"], m["predicted"], _fmt(m["confidence"], 3)] for m in evaluation.mistakes])]
    return blocks


def _metric_blocks(evaluation, split: str) -> list[Block]:
    metrics = evaluation.metrics
    return [
        Block("heading", f"Final metrics ({split} split)"),
        _table(["metric", "value"], [["loss", _fmt(evaluation.loss)], ["accuracy", _fmt(metrics.accuracy)],
                                     *[[f"top-{k} accuracy", _fmt(v)] for k, v in metrics.topk.items()],
                                     ["precision (macro / weighted)", f"{metrics.precision_macro:.4f} / {metrics.precision_weighted:.4f}"],
                                     ["recall (macro / weighted)", f"{metrics.recall_macro:.4f} / {metrics.recall_weighted:.4f}"],
                                     ["F1 (macro / weighted)", f"{metrics.f1_macro:.4f} / {metrics.f1_weighted:.4f}"]]),
        Block("heading", "Per class"),
        _table(["class", "precision", "recall", "F1", "support"],
               [[r["class"], _fmt(r["precision"], 3), _fmt(r["recall"], 3), _fmt(r["f1"], 3), r["support"]] for r in metrics.per_class]),
    ]


def _confused_pairs(matrix: np.ndarray, classes: list[str]) -> list[list[Any]]:
    off = [(int(matrix[i, j]), i, j) for i in range(len(classes)) for j in range(len(classes)) if i != j and matrix[i, j]]
    return [[classes[i], classes[j], count] for count, i, j in sorted(off, reverse=True)[:CONFUSED_PAIRS]] or [["-", "-", 0]]


def _study_blocks(study_dir: Path) -> list[Block]:
    document = json.loads((study_dir / "comparison.json").read_text())
    table = document["table"]
    columns = ["name", "arch", "trainable", "total", "epochs_run", "seconds", "best_val_acc", "best_val_loss", "test_acc", "f1_macro", "gap", "verdict"]
    best = max(table, key=lambda row: row.get("test_acc") or row.get("best_val_acc") or 0)
    blocks = [
        Block("heading", f"Study {study_dir.name}", 1),
        Block("heading", "TL;DR"),
        Block("text", f"{len(table)} configurations compared on the same split and seed; best: **{best['name']}** "
                      f"(test accuracy {_fmt(best.get('test_acc'))}, best val accuracy {_fmt(best.get('best_val_acc'))})."),
        Block("heading", "Comparison"),
        _table(columns, [[_fmt(row.get(c)) for c in columns] for row in table]),
    ]
    for name, title in (("accuracy.png", "Accuracy curves"), ("loss.png", "Loss curves"), ("overfitting_gap.png", "Over-fitting gap"),
                        ("convergence.png", "Convergence"), ("params_vs_time.png", "Trainable parameters vs training time"),
                        ("test_accuracy.png", "Test accuracy per configuration")):
        if (study_dir / name).exists():
            blocks += [Block("heading", title), Block("image", study_dir / name)]
    return blocks


def _markdown(blocks: list[Block], base: Path) -> str:
    lines: list[str] = []
    for block in blocks:
        if block.kind == "heading":
            lines.append(f"{'#' * block.level} {block.content}")
        elif block.kind == "text":
            lines.append(block.content)
        elif block.kind == "code":
            lines.append(f"```\n{block.content}\n```")
        elif block.kind == "image":
            lines.append(f"![{block.content.stem}]({Path(block.content).resolve().relative_to(base.resolve()).as_posix()})")
        else:
            header, rows = block.content
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        lines.append("")
    return "\n".join(lines)


def _html(blocks: list[Block], title: str) -> str:
    body: list[str] = []
    for block in blocks:
        if block.kind == "heading":
            body.append(f"<h{block.level}>{html.escape(block.content)}</h{block.level}>")
        elif block.kind == "text":
            text = html.escape(block.content)
            parts = text.split("**")
            body.append("<p>" + "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts)).replace("`", "") + "</p>")
        elif block.kind == "code":
            body.append(f"<pre>{html.escape(block.content)}</pre>")
        elif block.kind == "image":
            data = base64.b64encode(Path(block.content).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(Path(block.content).stem)}" src="data:image/png;base64,{data}">')
        else:
            header, rows = block.content
            head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
            cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
             "th{background:#f3f3f3}img{max-width:100%}pre{background:#f7f7f7;padding:1em;overflow-x:auto;font-size:.75em}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"


def _located(target: str | Path | None) -> Path:
    from tlcli.run.locate import checkpoints_root, resolve_checkpoint

    if target is None:
        return resolve_checkpoint(None)
    path = Path(target) if Path(target).exists() else checkpoints_root() / target
    return path if path.exists() else resolve_checkpoint(str(target))


def write_report(target: str | Path | None) -> dict[str, str]:
    """report.md and report.html for a run folder (or a checkpoint in one), a run name under
    checkpoints/, or a study folder; None: the latest run."""
    target = _located(target)
    folder = target.parent if target.is_file() else target
    if (folder / "comparison.json").exists():
        blocks = _study_blocks(folder)
    elif (folder / "best.pt").exists():
        blocks = _run_blocks(folder)
    else:
        raise TlcliError(f"{target} is neither a run folder (with best.pt) nor a study folder (with comparison.json)")
    markdown = folder / "report.md"
    page = folder / "report.html"
    markdown.write_text(_markdown(blocks, folder))
    page.write_text(_html(blocks, str(blocks[0].content)))
    return {"report.md": str(markdown), "report.html": str(page)}
