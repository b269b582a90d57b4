"""``tlcli data check``: counts, balance, sizes and every odd file of a data set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from tlcli.cli import groups, options, output
from tlcli.cli.help import epilog
from tlcli.core.config import DataConfig

app = typer.Typer(help="Inspect data sets.", no_args_is_help=True)


@app.command("check", epilog=epilog("data check", "Exit codes: 0 trainable, 1 not trainable or unreadable, 2 usage error, 128+N ended by signal N (130 Ctrl-C, 143 SIGTERM)."))
@groups.with_options(groups.DATA, leave_out=("data",))
def check(
    path: Annotated[str, typer.Argument(help="A folder, a name under data/, a built-in set, TFRecord files, hf:DATASET or a CSV label file.")],
    as_json: options.JsonOption = False,
    **values,
) -> int:
    """Count images per split and class, and list unreadable and suspicious files and links not followed.

    Decodes every image, so it finds truncated files that training would trip over.
    Exits 1 when the data set cannot be trained on.
    """
    from tlcli.data.check import check_data

    report = check_data(DataConfig(source=path, **values))
    if as_json:
        output.print_json(report.to_dict())
    else:
        _render(report)
    for problem in report.problems:
        output.error(f"cannot train on {report.data.source}: {problem}")
    return 0 if report.trainable else 1


def _render(report) -> None:
    data = report.data
    counts = data.class_counts()
    table = Table("class", *counts, "total", title=f"{data.source} ({data.kind}): {data.num_classes} classes")
    for name in data.classes:
        row = [counts[split][name] for split in counts]
        table.add_row(name, *map(str, row), str(sum(row)))
    totals = [sum(counts[split].values()) for split in counts]
    table.add_row("all", *map(str, totals), str(sum(totals)), style="bold")
    output.print_table(table)
    sizes = report.sizes
    output.out.print(
        f"imbalance ratio (largest / smallest class): {report.imbalance_ratio:.2f}\n"
        f"image width  min / median / max: {sizes['width']['min']} / {sizes['width']['median']} / {sizes['width']['max']}\n"
        f"image height min / median / max: {sizes['height']['min']} / {sizes['height']['median']} / {sizes['height']['max']}\n"
        f"modes: {', '.join(f'{mode} {count}' for mode, count in sorted(report.modes.items()))}\n"
        f"split: {data.split_info.get('method')}",
        markup=False,
    )
    listed = (("unreadable (skipped)", data.bad_files), ("not images (ignored)", data.ignored_files),
              ("links not followed", data.skipped_links), ("duplicates (dropped)", data.duplicates), ("suspicious", report.suspicious))
    for title, files in listed:
        if files:
            output.out.print(f"{title}: {len(files)}", markup=False)
            for item in files:
                output.out.print(f"  {item.path}: {item.reason}", markup=False)
    for note in data.notes:
        output.warn(note)


@app.command("export", epilog=epilog("data export", "Exit codes: 0 success, 1 runtime failure, 2 usage error, 128+N ended by signal N (130 Ctrl-C, 143 SIGTERM)."))
@groups.with_options(groups.DATA, leave_out=("data", "max_bad"))
def export(
    source: Annotated[str, typer.Argument(help="A folder, a name under data/, a built-in set, TFRecord files, hf:DATASET or a CSV label file.")],
    dest: Annotated[Path, typer.Argument(help="New folder to write <split>/<class>/<n>.png into.")],
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="At most this many images per split and class [default: all].")] = None,
    as_json: options.JsonOption = False,
    **values,
) -> None:
    """Write a data set as PNG files in a pre-split folder (train/val/test/<class>/).

    Training on the folder reproduces the source's split.
    """
    from tlcli.data.to_folder import export_images

    config = DataConfig(source=source, **values)
    written = export_images(config, dest, limit=limit)
    if as_json:
        output.print_json({"dest": str(dest), "images": written})
        return
    output.out.print(f"{dest}: " + ", ".join(f"{count} {split}" for split, count in written.items()), markup=False)
