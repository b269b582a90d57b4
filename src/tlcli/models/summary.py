"""The torchinfo table the reports printed, with the freeze state in its Trainable column."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from tlcli.core.config import ModelConfig
from tlcli.models.registry import BuiltModel, build_model

COLUMNS = ("input_size", "output_size", "num_params", "trainable")


@dataclass
class ModelSummary:
    table: str
    total_params: int
    trainable_params: int
    mult_adds: int
    input_shape: tuple[int, ...]
    params_mb: float
    total_mb: float
    rows: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape),
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.total_params - self.trainable_params,
            "mult_adds": self.mult_adds,
            "params_size_mb": round(self.params_mb, 2),
            "estimated_total_size_mb": round(self.total_mb, 2),
            "rows": self.rows,
        }


def _trainable(layer) -> str:
    params = list(layer.module.parameters(recurse=True)) if hasattr(layer, "module") else []
    if not params:
        return "--"
    flags = {p.requires_grad for p in params}
    return "Partial" if len(flags) == 2 else str(flags.pop())


def summarize(model: nn.Module, input_shape: tuple[int, ...], *, depth: int = 3) -> ModelSummary:
    import torchinfo

    was_training = model.training
    stats = torchinfo.summary(
        model,
        input_size=input_shape,
        depth=depth,
        col_names=COLUMNS,
        row_settings=("var_names",),
        verbose=0,
        device="cpu",
        mode="eval",
    )
    model.train(was_training)
    # torchinfo 1.8 on Python 3.11+ prints its unit enum ("Units.MEGABYTES") instead of "M".
    table = str(stats)
    for enum_text, short in (("Units.NONE", ""), ("Units.KILOBYTES", "K"), ("Units.MEGABYTES", "M"), ("Units.GIGABYTES", "G"), ("Units.TERABYTES", "T")):
        table = table.replace(f"({enum_text})", f"({short})" if short else "")
    rows = [
        {
            "layer": f"{layer.class_name} ({layer.var_name})",
            "depth": layer.depth,
            "input_shape": layer.input_size,
            "output_shape": layer.output_size,
            "params": layer.num_params,
            "trainable": _trainable(layer),
        }
        for layer in stats.summary_list
        if layer.depth <= depth
    ]
    to_mb = 1e-6
    return ModelSummary(
        table=table,
        total_params=stats.total_params,
        trainable_params=stats.trainable_params,
        mult_adds=stats.total_mult_adds,
        input_shape=tuple(input_shape),
        params_mb=stats.total_param_bytes * to_mb,
        total_mb=(stats.total_input + stats.total_output_bytes + stats.total_param_bytes) * to_mb,
        rows=rows,
    )


def summarize_architecture(config: ModelConfig, *, depth: int = 3) -> tuple[BuiltModel, ModelSummary]:
    """Build ``config``'s network without reading weights and summarise it at its preset input."""
    built = build_model(config, load_weights=False)
    return built, summarize_built(built, depth)


def summarize_built(built: BuiltModel, depth: int = 3) -> ModelSummary:
    """``built`` at its preset input (a checkpoint's model shows its freeze state as Trainable)."""
    preprocess = built.preprocess
    return summarize(built.model, (1, preprocess.channels, preprocess.input_size, preprocess.input_size), depth=depth)
