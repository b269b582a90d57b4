"""The model zoo: torchvision classifiers, ``timm:<name>`` and the reports' baselines.

``build_model`` returns the network with its head sized for the task, weights loaded and the
freeze policy applied, plus the preprocessing it expects.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from torch import nn

from tlcli.core.config import ModelConfig
from tlcli.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from tlcli.core.errors import ModelError
from tlcli.models.baselines import MLP, SimpleCNN
from tlcli.models.downloads import require, timm_weights_file, torch_hub_file
from tlcli.models.freeze import apply_freeze, count_parameters
from tlcli.models.heads import find_head, head_dropout, head_names, replace_head
from tlcli.models.weights import load_weights_file, timm_model, torchvision_pretrained

TIMM_PREFIX = "timm:"
BASELINE_PRESETS = {
    # The CIFAR-10 report's CNN sees 32x32 colour; the MNIST report's MLP 28x28 grayscale.
    "simple_cnn": Preprocess(32, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear", 3),
    "mlp": Preprocess(28, 28, (0.5,), (0.5,), "bilinear", 1),
}
BASELINE_DEFAULT_CLASSES = 10


@dataclass(frozen=True)
class ArchInfo:
    name: str
    source: str  # torchvision | timm | tlcli
    params: int | None  # of the ImageNet model, when known without building it
    input_size: int | None
    pretrained: str | None  # the weights --weights imagenet loads
    cached: bool | None = None  # whether those weights are already in their cache (None: no weights)


@lru_cache(maxsize=1)
def torchvision_architectures() -> tuple[str, ...]:
    from tlcli.core.vision import torchvision

    models = torchvision.models

    return tuple(models.list_models(module=models))


def _timm():
    try:
        import timm
    except ImportError:
        raise ModelError("timm models need the timm extra: pip install 'tlcli[timm]'") from None
    return timm


def _torchvision_info(name: str) -> ArchInfo:
    from tlcli.core.vision import torchvision

    models = torchvision.models

    weights = models.get_model_weights(name).DEFAULT
    cached = torch_hub_file(weights.url).found is not None
    return ArchInfo(name, "torchvision", weights.meta.get("num_params"), weights.transforms().crop_size[0], weights.name, cached)


def _timm_info(name: str, has_weights: bool) -> ArchInfo:
    file = timm_weights_file(name) if has_weights else None
    return ArchInfo(TIMM_PREFIX + name, "timm", None, None, "imagenet" if file else None, file.found is not None if file else None)


def list_architectures(pattern: str | None = None) -> list[ArchInfo]:
    """Architectures whose names match a glob (``resnet*``); ``timm:<glob>`` lists timm's."""
    if pattern and pattern.startswith(TIMM_PREFIX):
        timm = _timm()
        pretrained = set(timm.list_models(pretrained=True))
        return [
            _timm_info(name, any(p.startswith(name + ".") or p == name for p in pretrained))
            for name in timm.list_models(pattern[len(TIMM_PREFIX):] or "*")
        ]
    found = [ArchInfo(name, "tlcli", None, preset.input_size, None) for name, preset in BASELINE_PRESETS.items()]
    found += [_torchvision_info(name) for name in torchvision_architectures()]
    if pattern:
        glob = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
        found = [info for info in found if fnmatch.fnmatch(info.name.lower(), glob.lower())]
    return found


def check_arch(name: str) -> str:
    """The architecture's source, or a ModelError naming the closest valid names."""
    if name in BASELINE_PRESETS:
        return "tlcli"
    if name in torchvision_architectures():
        return "torchvision"
    if name.startswith(TIMM_PREFIX):
        timm = _timm()
        if timm.is_model(name[len(TIMM_PREFIX):]):
            return "timm"
        close = difflib.get_close_matches(name[len(TIMM_PREFIX):], timm.list_models(), n=5)
        hint = ", ".join(TIMM_PREFIX + c for c in close) or "see 'tlcli models timm:*'"
        raise ModelError(f"unknown architecture '{name}'; closest: {hint}")
    valid = [*BASELINE_PRESETS, *torchvision_architectures()]
    close = difflib.get_close_matches(name, valid, n=5, cutoff=0.5)
    hint = f"closest: {', '.join(close)}" if close else "see 'tlcli models' for the list"
    raise ModelError(f"unknown architecture '{name}'; {hint} (timm models as timm:<name>)")


def has_pretrained_weights(arch: str) -> bool:
    return arch not in BASELINE_PRESETS


def check_weights_obtainable(config: ModelConfig) -> None:
    """A WeightsError now, before any data is read, when ``config``'s ImageNet weights are neither
    cached nor downloadable; the download itself waits for ``build_model``."""
    if resolve_weights(config).lower() != "imagenet":
        return
    source = check_arch(config.arch)
    if source == "torchvision":
        from tlcli.core.vision import torchvision

        require(torch_hub_file(torchvision.models.get_model_weights(config.arch).DEFAULT.url), config.arch)
    elif source == "timm":
        file = timm_weights_file(config.arch[len(TIMM_PREFIX):])
        if file is not None:
            require(file, config.arch)


@dataclass
class BuiltModel:
    model: nn.Module
    arch: str
    num_classes: int
    head_name: str
    dropout: float
    weights: str  # what was loaded: torchvision:<arch>.<weights>, timm:<name>, a path, or none
    preprocess: Preprocess
    freeze_policy: str
    frozen: list[str]
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """The ``model`` entry of a checkpoint: enough to rebuild the network."""
        return {
            "arch": self.arch,
            "num_classes": self.num_classes,
            "head": self.head_name,
            "dropout": self.dropout,
            "weights": self.weights,
            "parameters": count_parameters(self.model).to_dict(),
        }


def resolve_weights(config: ModelConfig) -> str:
    if config.weights is not None:
        return config.weights
    return "imagenet" if has_pretrained_weights(config.arch) else "none"


def _torchvision_preset(arch: str) -> Preprocess:
    from tlcli.core.vision import torchvision

    models = torchvision.models

    preset = models.get_model_weights(arch).DEFAULT.transforms()
    return Preprocess(
        preset.crop_size[0], preset.resize_size[0], tuple(preset.mean), tuple(preset.std), preset.interpolation.value, 3
    )


def _timm_preset(model: nn.Module) -> Preprocess:
    timm = _timm()
    config = timm.data.resolve_data_config({}, model=model)
    size = config["input_size"][-1]
    return Preprocess(
        size,
        round(size / config.get("crop_pct", 1.0)),
        tuple(config.get("mean", IMAGENET_MEAN)),
        tuple(config.get("std", IMAGENET_STD)),
        config.get("interpolation", "bilinear"),
        config["input_size"][0],
    )


def _drop_auxiliary_heads(model: nn.Module) -> None:
    """Inception v3 and GoogLeNet train extra heads; transfer learning uses the main one only."""
    if hasattr(model, "aux_logits"):
        model.aux_logits = False
        for name in ("AuxLogits", "aux1", "aux2"):
            if hasattr(model, name):
                setattr(model, name, None)


def _base_network(config: ModelConfig, source: str, weights: str, load_weights: bool, num_classes: int | None):
    """(network, preprocess, weights id) before the head is replaced."""
    imagenet = weights.lower() == "imagenet"
    if source == "tlcli":
        if imagenet:
            raise ModelError(f"{config.arch} is trained from scratch and has no pretrained weights; train it with weights none")
        preset = BASELINE_PRESETS[config.arch]
        if config.input_size:
            preset = preset.resized(config.input_size)
        classes = num_classes or BASELINE_DEFAULT_CLASSES
        if config.arch == "simple_cnn":
            if preset.input_size % 4:
                raise ModelError(f"simple_cnn needs an input size divisible by 4, got {preset.input_size}")
            network = SimpleCNN(classes, in_channels=preset.channels, input_size=preset.input_size)
        else:
            if not config.hidden or any(size < 1 for size in config.hidden):
                raise ModelError(f"hidden layer sizes must be positive, got {config.hidden}")
            network = MLP(classes, in_channels=preset.channels, input_size=preset.input_size, hidden=config.hidden)
        return network, preset, "none"
    if source == "torchvision":
        from tlcli.core.vision import torchvision

        models = torchvision.models

        if imagenet and load_weights:
            network, weights_id = torchvision_pretrained(config.arch)
        else:
            network, weights_id = models.get_model(config.arch, weights=None), "none"
            if imagenet:
                weights_id = "imagenet (not loaded)"
        preset = _torchvision_preset(config.arch)
    else:
        name = config.arch[len(TIMM_PREFIX):]
        network = timm_model(name, pretrained=imagenet and load_weights, num_classes=num_classes, dropout=config.dropout)
        weights_id = f"timm:{name}" if imagenet and load_weights else "none"
        preset = _timm_preset(network)
    _drop_auxiliary_heads(network)
    if config.input_size:
        preset = preset.resized(config.input_size)
    return network, preset, weights_id


def build_model(config: ModelConfig, *, num_classes: int | None = None, load_weights: bool = True) -> BuiltModel:
    """Build ``config.arch`` for ``num_classes`` (None: keep its own head).

    ``load_weights=False`` builds the same structure without reading any weights (for
    summaries, and before loading a checkpoint's own state dict).
    """
    source = check_arch(config.arch)
    if num_classes is None:
        num_classes = config.num_classes
    weights = resolve_weights(config)
    network, preprocess, weights_id = _base_network(config, source, weights, load_weights, num_classes)
    head_name = find_head(network)
    head = network.get_submodule(head_names(head_name)[0])
    current = getattr(network, "num_classes", None) if source == "timm" else None
    current = current or (head.out_features if isinstance(head, nn.Linear) else head.out_channels)
    wanted = num_classes or current
    if wanted != current or (config.dropout is not None and source != "timm"):
        head_name = replace_head(network, head_name, wanted, config.dropout)
    notes: list[str] = []
    if weights.lower() not in ("imagenet", "none"):
        if load_weights:
            notes += load_weights_file(network, Path(weights), head_name)
        weights_id = str(weights)
    policy = config.freeze if config.freeze is not None else ("backbone" if weights.lower() != "none" else "none")
    frozen = apply_freeze(network, policy, head_name)
    # timm applies its dropout inside forward_head (drop_rate), not as a module before the head.
    dropout = float(getattr(network, "drop_rate", 0.0)) if source == "timm" else head_dropout(network, head_name)
    return BuiltModel(network, config.arch, wanted, head_name, dropout, weights_id, preprocess, policy, frozen, notes)
