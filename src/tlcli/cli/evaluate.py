"""``tlcli evaluate``: metrics, per-class report, confusion matrices and worst mistakes."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Column, Table

from tlcli import api
from tlcli.cli import groups, options, output

_E = options.defaults_of(api.evaluate)


@groups.with_options(groups.pick(groups.DATA, "image_column", "label_column", "image_dir"),
                     groups.pick(groups.TRAIN, "device", "amp", "workers"), defaults=_E)
def evaluate(
    checkpoint: Annotated[Optional[str], typer.Argument(help="A checkpoint file, run folder or run name [default: the latest run's best.pt].")] = None,
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="Evaluate on other data [default: the checkpoint's, split as in training].")] = None,
    split: Annotated[str, typer.Option("--split", help="test | val | train.")] = _E["split"],
    batch_size: options.BatchSize = _E["batch_size"],
    mistakes: Annotated[int, typer.Option("--mistakes", min=0, help="How many of the most confident mistakes to list.")] = _E["mistakes"],
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Folder for the figures and metrics [default: <run>/eval-<split>; with --data, <run>/eval-<data name>-<split>].")] = None,
    tta: options.Tta = _E["tta"],
    as_json: options.JsonOption = False,
    **values,
) -> None:
    """Evaluate a checkpoint on the held-out split it was trained beside (rebuilt exactly).

    Prints loss, accuracy, top-k accuracy, macro and weighted precision/recall/F1, the
    per-class report, the train-val gap with its over/under-fitting reading and the most
    confident mistakes; writes confusion matrices (PNG raw and normalised, CSV) and metrics.json.
    """
    from tlcli.engine.distributed import is_main_process

    result = api.evaluate(checkpoint, data=data, split=split, batch_size=batch_size, mistakes=mistakes, out=out, tta=tta, **values)
    if not is_main_process():  # under torchrun every process has the result; rank 0 shows it
        return
    for note in result.notes:
        output.warn(note)
    if as_json:
        output.print_json(result.to_dict())
        return
    m = result.metrics
    topk = "  ".join(f"top-{k} {v:.4f}" for k, v in m.topk.items())
    output.out.print(
        f"{result.checkpoint} on {result.data} [{result.split}], {result.images} images\n"
        f"loss {result.loss:.4f}  accuracy {m.accuracy:.4f}  {topk}\n"
        f"macro     precision {m.precision_macro:.4f}  recall {m.recall_macro:.4f}  f1 {m.f1_macro:.4f}\n"
        f"weighted  precision {m.precision_weighted:.4f}  recall {m.recall_weighted:.4f}  f1 {m.f1_weighted:.4f}",
        markup=False,
    )
    table = Table("class", "precision", "recall", "f1", "support", title="per class")
    for row in m.per_class:
        table.add_row(row["class"], f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"]))
    output.print_table(table)
    if result.fit:
        fit = result.fit
        output.out.print(
            f"train - val accuracy gap at epoch {fit['epoch']}: {fit['gap']:+.3f} "
            f"(train {fit['train_acc']:.3f}, val {fit['val_acc']:.3f}): {fit['verdict']}",
            markup=False,
        )
    if result.mistakes:
        worst = Table(Column("image", overflow="fold"), "true", "predicted", "confidence", title="most confident mistakes")
        for row in result.mistakes:
            worst.add_row(row["image"], row["true"], row["predicted"], f"{row['confidence']:.3f}")
        output.print_table(worst)
    output.out.print(f"written to {result.folder}: {', '.join(result.files)}", markup=False)
