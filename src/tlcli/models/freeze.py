"""Freeze policies: which parameters train, and which layers run in inference mode.

Policies (``--freeze`` in phase 1, ``--unfreeze`` in phase 2):
  none        train everything
  backbone    train only the head
  all         train nothing (evaluation, feature extraction)
  last:N      train the head and the last N parameterised layers (Keras' "unfreeze the last N")
  blocks:N    freeze the first N stages of the backbone (ResNet: stem + layer1 .. layerN)
  re:PATTERN  freeze the parameters whose names match the regular expression
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from tlcli.core.config import check_freeze_policy
from tlcli.core.errors import ModelError
from tlcli.models.heads import head_names, within_head

# Where architectures keep their sequence of stages; the first one present with two or more
# children is used, else the network's own top-level children.
TRUNK_PATHS = ("features", "trunk_output", "stages", "blocks", "layers", "encoder.layers")


@dataclass(frozen=True)
class ParameterCounts:
    total: int
    trainable: int

    @property
    def frozen(self) -> int:
        return self.total - self.trainable

    def to_dict(self) -> dict[str, int]:
        return {"total": self.total, "trainable": self.trainable, "frozen": self.frozen}


def count_parameters(model: nn.Module) -> ParameterCounts:
    params = list(model.parameters())
    return ParameterCounts(sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad))


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _count_arg(policy: str) -> int:
    kind, _, value = policy.partition(":")
    if not value.isdigit():
        raise ModelError(f"freeze policy '{policy}' needs a whole number after '{kind}:', e.g. {kind}:2")
    return int(value)


def _trunk(model: nn.Module) -> tuple[str, nn.Module]:
    for path in TRUNK_PATHS:
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        if len(list(module.children())) >= 2:
            return path, module
    return "", model


def backbone_stages(model: nn.Module, head_name: str) -> list[list[str]]:
    """Parameter names of each backbone stage, in forward order.

    Stages are the parameterised children of the trunk; leading single layers (a ResNet's
    conv1 and bn1) join the first block as its stem. Backbone parameters outside the trunk
    (a ViT's class token, a final norm) join the stage that precedes them.
    """
    path, trunk = _trunk(model)
    children = []
    for child_name, child in trunk.named_children():
        full = f"{path}.{child_name}" if path else child_name
        if any(_under(head, full) for head in head_names(head_name)) or within_head(full, head_name) or not any(True for _ in child.parameters()):
            continue
        children.append((full, child))
    stages: list[list[str]] = []
    pending: list[str] = []
    for full, child in children:
        pending.append(full)
        is_block = any(True for _ in child.children())
        if is_block or stages:
            stages.append(pending)
            pending = []
    if pending:
        stages += [[name] for name in pending]
    owner: dict[str, int] = {}
    names = [name for name, _ in model.named_parameters() if not within_head(name, head_name)]
    for index, prefixes in enumerate(stages):
        for name in names:
            if any(_under(name, prefix) for prefix in prefixes):
                owner[name] = index
    grouped: list[list[str]] = [[] for _ in stages]
    current = 0
    for name in names:
        current = owner.get(name, current)
        grouped[current].append(name)
    return grouped


def _parameterised_layers(model: nn.Module, head_name: str) -> list[str]:
    return [
        name
        for name, module in model.named_modules()
        if any(True for _ in module.parameters(recurse=False)) and not within_head(name, head_name)
    ]


def frozen_names(model: nn.Module, policy: str, head_name: str) -> list[str]:
    """Names of the parameters the policy freezes; raises ModelError for a bad policy."""
    check_freeze_policy(policy)
    names = [name for name, _ in model.named_parameters()]
    backbone = [name for name in names if not within_head(name, head_name)]
    if policy == "none":
        return []
    if policy == "all":
        return names
    if policy == "backbone":
        return backbone
    if policy.startswith("last:"):
        keep = _count_arg(policy)
        layers = _parameterised_layers(model, head_name)
        trainable_layers = set(layers[len(layers) - keep :] if keep else [])
        return [name for name in backbone if name.rpartition(".")[0] not in trainable_layers]
    if policy.startswith("blocks:"):
        count = _count_arg(policy)
        stages = backbone_stages(model, head_name)
        if count > len(stages):
            raise ModelError(f"freeze policy '{policy}': this network has {len(stages)} stages, so N goes from 0 to {len(stages)}")
        return [name for stage in stages[:count] for name in stage]
    return [name for name in names if re.search(policy[3:], name)]


def apply_freeze(model: nn.Module, policy: str, head_name: str) -> list[str]:
    """Set ``requires_grad`` by the policy; returns the frozen parameter names."""
    frozen = set(frozen_names(model, policy, head_name))
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name not in frozen)
    return sorted(frozen)


def keeps_norm_statistics(*, bn_train: bool, weights: str, phase: int) -> bool:
    """Whether normalisation layers keep their running statistics while their network trains:
    yes for pretrained weights and for phase 2 (the head was fitted on features normalised with
    them; batch statistics in their place undo that fit, Keras' transfer-learning pitfall), no
    for a network trained from scratch, and never with ``bn_train``."""
    return not bn_train and (phase > 1 or weights.lower() != "none")


def set_train_mode(model: nn.Module, *, bn_train: bool = False, keep_norm_statistics: bool = False) -> None:
    """``model.train()``, except that wholly frozen parts run as in inference.

    A frozen block keeps its BatchNorm statistics and skips its dropout and stochastic depth,
    as Keras does for ``trainable=False`` layers, so a frozen backbone is a fixed function.
    ``keep_norm_statistics`` also keeps every trainable normalisation layer with running
    statistics in inference mode (its scale and shift still train). ``bn_train`` lets them all
    update as in plain ``model.train()``.
    """
    model.train()
    if bn_train:
        return
    for module in model.modules():
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            module.eval()
        elif keep_norm_statistics and isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
            module.eval()
