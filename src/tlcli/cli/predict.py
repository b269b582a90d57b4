"""``tlcli predict``: top-k classes of image files, streamed as they are classified."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Column, Table

from tlcli import api
from tlcli.api.use import OUTPUT_SUFFIX_FORMATS
from tlcli.cli import groups, options, output

_P = options.defaults_of(api.predict)

EPILOG = (
    "Exit codes: 0 every image classified, 1 nothing could be predicted (no images, a bad checkpoint or output file), "
    "2 usage error, 3 some images unreadable (one error row each, the rest classified; with --resume, in the whole file), "
    "128+N stopped by signal N (130 Ctrl-C, 143 SIGTERM; 138 SIGUSR1 stops after the current batch; 141, silently, when "
    "the reader of stdout goes away, as with | head). Rows follow the inputs: arguments in order, "
    "a folder's images and a glob's matches sorted by path, then --from-list's lines."
)
_OUTPUT = "Output"


def _format(as_csv: bool, as_jsonl: bool, as_json: bool, out: Optional[Path], resume: bool) -> str:
    """The output format, from the flags or --output's suffix; usage errors before anything is read."""
    chosen = [name for name, given in (("csv", as_csv), ("jsonl", as_jsonl), ("json", as_json)) if given]
    if len(chosen) > 1:
        raise typer.BadParameter(f"choose one of --csv, --jsonl and --json, not {' and '.join('--' + c for c in chosen)}")
    if out is not None and str(out) != "-" and not chosen:
        if out.suffix.lower() not in OUTPUT_SUFFIX_FORMATS:
            raise typer.BadParameter(f"say the format of {out}: add --csv or --jsonl (or name it .csv, .jsonl or .json)", param_hint="--output")
        chosen = [OUTPUT_SUFFIX_FORMATS[out.suffix.lower()]]
    format = chosen[0] if chosen else "table"
    if resume and (out is None or str(out) == "-"):
        raise typer.BadParameter("--resume continues a file: give it with --output FILE", param_hint="--resume")
    if resume and format not in ("csv", "jsonl"):
        raise typer.BadParameter(f"--resume continues --csv or --jsonl files, not {'a table' if format == 'table' else '--json'}", param_hint="--resume")
    if out is not None and format == "table":
        raise typer.BadParameter("a table is for the terminal: add --csv, --jsonl or --json to write a file", param_hint="--output")
    return format


@groups.with_options(groups.pick(groups.TRAIN, "device"), defaults=_P)
def predict(
    images: Annotated[Optional[list[str]], typer.Argument(help="Image files, folders (every image below), globs, or - for one image on stdin [default: none: only --from-list].", show_default=False)] = None,
    checkpoint: Annotated[Optional[str], typer.Option("--checkpoint", "-c", help="Checkpoint file, run folder or run name [default: the latest run's best.pt].")] = None,
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="An ONNX model exported by 'tlcli export' (fp32 or int8), run with onnxruntime instead of a checkpoint [default: none].")] = None,
    from_list: Annotated[Optional[str], typer.Option("--from-list", help="Also classify the paths in this file, one a line; - reads them from stdin [default: none].")] = None,
    topk: Annotated[int, typer.Option("--topk", "-k", min=1, help="How many classes to give per image.")] = _P["topk"],
    batch_size: options.BatchSize = _P["batch_size"],
    workers: Annotated[Optional[int], typer.Option("--workers", min=0, max=64, help="Processes decoding images while the model runs; 0 decodes in the main process [default: cores-1, at least 1].")] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV rows (path, rank, label, probability, error), written batch by batch.", rich_help_panel=_OUTPUT)] = False,
    as_jsonl: Annotated[bool, typer.Option("--jsonl", help="JSON lines, one object per image, written batch by batch.", rich_help_panel=_OUTPUT)] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array of the images.", rich_help_panel=_OUTPUT)] = False,
    out: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the results to this file instead of stdout; its suffix (.csv, .jsonl, .json) sets the format when no flag does [default: stdout].", rich_help_panel=_OUTPUT)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Skip the images --output already holds and append the rest (a killed job goes on; with no file yet, it starts).", rich_help_panel=_OUTPUT)] = False,
    tta: options.Tta = _P["tta"],
    **values,
) -> int:
    """Classify images with a trained checkpoint or an exported ONNX model, using the preprocessing it was trained with.

    Results are written as each batch is classified; images are decoded by worker processes
    while the model runs, in memory that does not grow with the number of images. Unreadable
    files get one error row each and are reported on stderr; the rest are still classified.
    """
    format = _format(as_csv, as_jsonl, as_json, out, resume)
    if model is not None and checkpoint is not None:
        raise typer.BadParameter("give a checkpoint (--checkpoint) or an ONNX model (--model), not both", param_hint="--model")
    images = images or []
    if images.count("-") + (from_list == "-") > 1:
        raise typer.BadParameter("stdin can be read once: as one image (-) or as the list (--from-list -), not both")
    if not images and from_list is None:
        raise typer.BadParameter("give images to classify, or --from-list FILE", param_hint="IMAGES")
    shown: list = []
    summary = api.predict(
        images, checkpoint=checkpoint, model=model, topk=topk, device=values["device"], batch_size=batch_size, workers=workers,
        from_list=from_list, format=format, output=sys.stdout if out is None or str(out) == "-" else out,
        resume=resume, on_batch=lambda batch: _report_batch(batch, shown, keep=format == "table"), tta=tta,
    ).summary
    if format == "table":
        _print_table(shown)
    skipped = f", {summary.skipped} already in {out} ({summary.failed_before} unreadable)" if summary.skipped else ""
    repaired = f"; went on from the last whole batch in {out} ({summary.cut} bytes after it cut)" if summary.cut else ""
    output.info(f"{'model' if model else 'checkpoint'}: {summary.source}; {summary.images} images, {summary.failed} unreadable{skipped}{repaired}")
    return 3 if summary.failed or summary.failed_before else 0


def _report_batch(batch: list, shown: list, *, keep: bool) -> None:
    for prediction in batch:
        if prediction.error:
            output.error(f"{prediction.path}: {prediction.error}")
    if keep:
        shown.extend(p for p in batch if p.top)


def _print_table(predictions: list) -> None:
    # The library clamps --topk to the number of classes: one column per class returned.
    columns = max((len(p.top) for p in predictions), default=1)
    table = Table(Column("image", overflow="fold"), "prediction", "probability", *(f"#{i}" for i in range(2, columns + 1)))
    for p in predictions:
        table.add_row(p.path, p.top[0][0], f"{p.top[0][1]:.3f}", *(f"{label} {prob:.3f}" for label, prob in p.top[1:]))
    output.print_table(table)
