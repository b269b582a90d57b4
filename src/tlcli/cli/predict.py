"""``tlcli predict``: top-k classes of image files."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Column, Table

from tlcli.cli import options, output


def predict(
    images: Annotated[list[str], typer.Argument(help="Image files, folders (every image below) or globs.")],
    checkpoint: Annotated[Optional[str], typer.Option("--checkpoint", "-c", help="Checkpoint file, run folder or run name [default: the latest run's best.pt].")] = None,
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="An ONNX model exported by 'tlcli export', run with onnxruntime instead of a checkpoint [default: none].")] = None,
    topk: Annotated[int, typer.Option("--topk", "-k", min=1, help="How many classes to show per image.")] = 5,
    device: options.Device = "auto",
    batch_size: options.BatchSize = 32,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV (path, rank, label, probability, error) instead of a table.")] = False,
    as_json: options.JsonOption = False,
) -> int:
    """Classify images with a trained checkpoint, using the preprocessing it was trained with.

    Unreadable files are reported on stderr and the rest still predicted; the exit code is then 1.
    --json and --csv list them too, each with its error and no classes.
    """
    from tlcli.prediction import predict as run_predict

    used, predictions = run_predict(images, checkpoint=checkpoint, model_file=model, topk=topk, device=device, batch_size=batch_size)
    output.info(f"{'model' if model else 'checkpoint'}: {used}")
    failed = [p for p in predictions if p.error]
    if as_json:
        output.print_json([p.to_dict() for p in predictions])
    elif as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["path", "rank", "label", "probability", "error"])
        for p in predictions:
            writer.writerows([p.path, rank, label, f"{prob:.6f}", ""] for rank, (label, prob) in enumerate(p.top, start=1))
            if p.error:
                writer.writerow([p.path, "", "", "", p.error])
    else:
        # The library clamps --topk to the number of classes: one column per class returned.
        shown = max(len(p.top) for p in predictions)
        table = Table(Column("image", overflow="fold"), "prediction", "probability", *(f"#{i}" for i in range(2, shown + 1)))
        for p in predictions:
            if p.top:
                rest = [f"{label} {prob:.3f}" for label, prob in p.top[1:]]
                table.add_row(p.path, p.top[0][0], f"{p.top[0][1]:.3f}", *rest)
        output.print_table(table)
    for p in failed:
        output.error(f"{p.path}: {p.error}")
    return 1 if failed else 0
