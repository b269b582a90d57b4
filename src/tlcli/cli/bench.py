"""``tlcli bench``: tlcli's speed targets, measured as ratios on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli.cli import options, output

EPILOG = "Exit codes: 0 every target met, 1 a target missed or a runtime failure, 2 usage error, 128+N ended by signal N (130 Ctrl-C, 143 SIGTERM)."


def _cell(value: float, unit: str) -> str:
    return f"{value:,.3f} {unit}" if value < 10 else f"{value:,.1f} {unit}"


def render_table(rows: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="tlcli bench", title_justify="left")
    for column in ("#", "measurement", "baseline", "baseline value", "tlcli", "ratio", "goal", "result"):
        table.add_column(column, justify="right" if column in ("baseline value", "tlcli", "ratio") else "left")
    for row in rows:
        table.add_row(
            str(row["target"]), row["name"], row["baseline"], _cell(row["baseline_value"], row["unit"]),
            _cell(row["tlcli_value"], row["unit"]), f"{row['ratio']:.2f}x", row["goal"], "pass" if row["passed"] else "FAIL",
        )
    output.print_table(table)


def bench(
    targets: Annotated[Optional[str], typer.Option("--targets", help="Comma-separated targets to run (1-6, quality) [default: all].")] = None,
    arch: Annotated[str, typer.Option("--arch", help="The torchvision architecture measured.")] = "efficientnet_b0",
    images: Annotated[int, typer.Option("--images", min=50, max=1797, help="JPEG images of the phase-1 comparison (the digits: at most 1,797).")] = 512,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Phase-1 epochs.")] = 10,
    size: Annotated[int, typer.Option("--size", min=32, help="The model's input size.")] = 224,
    full_images: Annotated[int, typer.Option("--full-images", min=1, max=1797, help="Images per epoch of the full fine-tune comparison.")] = 96,
    workdir: Annotated[Optional[Path], typer.Option("--workdir", help="Where the temporary images and runs go [default: the system's temp folder].")] = None,
    save: Annotated[Optional[Path], typer.Option("--save", help="Also write the JSON report to this file [default: none].")] = None,
    as_json: options.JsonOption = False,
) -> None:
    """Measure tlcli against plain PyTorch loops on this machine: phase-1 speed-up, full
    fine-tune speed-up, data pipeline and loop overhead, start-up times (targets 1-5);
    prediction at scale: throughput against the model alone, memory over 20,000 images, int8
    against fp32 ONNX (target 6); and the two-phase recipe on real ImageNet weights on three
    real data sets, beside a logistic-regression probe and fastai's fine_tune (quality). Each ratio is checked against its target; every
    measurement runs in a fresh process. benchmarks/README.md gives the times.
    """
    import json

    from tlcli.bench.runner import TARGETS, BenchSettings, run_bench
    from tlcli.core.errors import TlcliError

    chosen = tuple(t.strip() for t in targets.split(",")) if targets else TARGETS
    if not chosen or not set(chosen) <= set(TARGETS):
        raise typer.BadParameter(f"expected targets among {','.join(TARGETS)}, got '{targets}'", param_hint="--targets")
    settings = BenchSettings(arch=arch, images=images, epochs=epochs, size=size, full_images=full_images)
    report = run_bench(settings, targets=chosen, workdir=workdir,
                       on_row=lambda row: output.info(f"target {row.target}: {row.name}: {row.ratio:.2f}x ({'pass' if row.passed else 'FAIL'})"))
    document = report.to_dict()
    if save is not None:
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(json.dumps(document, indent=2) + "\n")
    if as_json:
        output.print_json(document)
    else:
        render_table(document["rows"])
        output.out.print(f"{report.seconds:.0f} s on {report.machine['cores']} cores", markup=False)
    if not report.passed:
        missed = ", ".join(sorted({str(row.target) for row in report.rows if not row.passed}))
        raise TlcliError(f"target(s) {missed} missed on this machine")
