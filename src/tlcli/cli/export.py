"""``tlcli export``: ONNX or TorchScript, with classes and preprocessing inside and parity checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli.cli import options, output

_GRAPH = "Graph"
EPILOG = "Exit codes: 0 exported and parity holds, 1 a failure or a failed parity check, 2 usage error, 128+N ended by signal N (130 Ctrl-C, 143 SIGTERM)."


def export(
    checkpoint: Annotated[Optional[str], typer.Argument(help="A checkpoint file, run folder or run name [default: the latest run's best.pt].")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="onnx | torchscript.")] = "onnx",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output file [default: beside the checkpoint, its name with .onnx or .torchscript.pt].")] = None,
    opset: Annotated[int, typer.Option("--opset", min=11, help="ONNX opset version.")] = 18,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch/--fixed-batch", help="Let the exported model take any batch size.", rich_help_panel=_GRAPH)] = True,
    embed_preprocessing: Annotated[bool, typer.Option("--embed-preprocessing", help="Normalise inside the graph: the model takes resized uint8 RGB.", rich_help_panel=_GRAPH)] = False,
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="Check parity on these images [default: generated images].")] = None,
    as_json: options.JsonOption = False,
) -> int:
    """Export a checkpoint and check that the exported model agrees with PyTorch.

    Class names and preprocessing are stored in the file (ONNX metadata_props, TorchScript extra
    files). Parity: maximum absolute logit difference and top-1 agreement on 8 images.
    """
    from tlcli.export import PARITY_TOLERANCE, export_checkpoint

    result = export_checkpoint(
        checkpoint, format=format, out=out, opset=opset, dynamic_batch=dynamic_batch, embed_preprocessing=embed_preprocessing, data=data
    )
    if as_json:
        output.print_json(result.to_dict())
    else:
        output.out.print(
            f"{result.format}: {result.path}\n"
            f"parity on {result.images} images: max |logit difference| {result.max_abs_diff:.2e} (tolerance {PARITY_TOLERANCE:g}), "
            f"top-1 agreement {result.top1_agreement:.1%}: {'pass' if result.passed else 'FAIL'}",
            markup=False,
        )
    if not result.passed:
        output.error(f"the exported model disagrees with PyTorch (max logit difference {result.max_abs_diff:.2e}); do not deploy it")
    return 0 if result.passed else 1
