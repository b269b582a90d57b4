"""``tlcli export``: ONNX or TorchScript, with classes and preprocessing inside and parity checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tlcli import api
from tlcli.cli import options, output

_X = options.defaults_of(api.export)

_GRAPH = "Graph"
_INT8 = "Quantization"
EPILOG = "Exit codes: 0 exported and parity holds, 1 a failure, a failed parity check or an int8 model refused for its accuracy, 2 usage error, 128+N ended by signal N (130 Ctrl-C, 143 SIGTERM)."


def export(
    ctx: typer.Context,
    checkpoint: Annotated[Optional[str], typer.Argument(help="A checkpoint file, run folder or run name [default: the latest run's best.pt].")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="onnx | torchscript.")] = _X["format"],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output file [default: beside the checkpoint, its name with .onnx or .torchscript.pt].")] = None,
    opset: Annotated[int, typer.Option("--opset", min=11, help="ONNX opset version.")] = _X["opset"],
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch/--fixed-batch", help="Let the exported model take any batch size.", rich_help_panel=_GRAPH)] = _X["dynamic_batch"],
    embed_preprocessing: Annotated[bool, typer.Option("--embed-preprocessing", help="Normalise inside the graph: the model takes resized uint8 RGB.", rich_help_panel=_GRAPH)] = _X["embed_preprocessing"],
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="Check parity on these images [default: generated images; with --quantize, the run's own data].")] = None,
    quantize: Annotated[str, typer.Option("--quantize", help="none | int8: onnxruntime's static int8 quantization, calibrated on the run's training images and checked on its test split.", rich_help_panel=_INT8)] = _X["quantize"],
    calibration_images: Annotated[int, typer.Option("--calibration-images", min=1, help="Training images that calibrate the int8 activation ranges.", rich_help_panel=_INT8)] = _X["calibration_images"],
    max_accuracy_drop: Annotated[float, typer.Option("--max-accuracy-drop", min=0.0, max=100.0, help="Refuse the int8 model (write nothing) when it loses more test accuracy than this many points.", rich_help_panel=_INT8)] = _X["max_accuracy_drop"],
    tta: Annotated[bool, typer.Option("--tta", help="Also check parity of the predictions averaged over predict --tta's views.")] = _X["tta"],
    as_json: options.JsonOption = False,
) -> int:
    """Export a checkpoint and check that the exported model agrees with PyTorch.

    Class names and preprocessing are stored in the file (ONNX metadata_props, TorchScript extra
    files). Parity: maximum absolute logit difference and top-1 agreement on 8 images. With
    --quantize int8 the ONNX model is quantized for CPUs and written instead of the fp32 one
    (best.int8.onnx), once its accuracy on the run's test split is within --max-accuracy-drop of
    fp32's; 'tlcli predict --model' runs either file. An existing --out is replaced only if it
    is an earlier tlcli export.
    """
    from tlcli.deploy.exporting import PARITY_TOLERANCE

    for name, flag in (("calibration_images", "--calibration-images"), ("max_accuracy_drop", "--max-accuracy-drop")):
        if quantize == "none" and getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE":
            raise typer.BadParameter(f"{flag} is for --quantize int8", param_hint=flag)

    result = api.export(
        checkpoint, format=format, out=out, opset=opset, dynamic_batch=dynamic_batch, embed_preprocessing=embed_preprocessing, data=data,
        quantize=quantize, calibration_images=calibration_images, max_accuracy_drop=max_accuracy_drop, tta=tta,
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
        if result.tta_max_abs_diff is not None:
            output.out.print(f"with --tta's views: max |probability difference| {result.tta_max_abs_diff:.2e}, "
                             f"top-1 agreement {result.tta_top1_agreement:.1%}", markup=False)
        if result.quantized:
            q = result.quantized
            output.out.print(
                f"int8 on {q.images} {q.split} images (calibrated on {q.calibration_images} training images): accuracy {q.int8_accuracy:.1%} "
                f"vs fp32 {q.fp32_accuracy:.1%} ({q.drop_points:+.1f} points lost, at most {q.max_drop_points:g}), top-1 agreement {q.top1_agreement:.1%}",
                markup=False,
            )
    if not result.passed:
        tta = f", with --tta's views {result.tta_max_abs_diff:.2e}" if result.tta_max_abs_diff is not None else ""
        output.error(f"the exported model disagrees with PyTorch (max logit difference {result.max_abs_diff:.2e}{tta}); do not deploy it")
    return 0 if result.passed else 1
