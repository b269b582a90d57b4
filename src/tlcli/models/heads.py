"""Finding and replacing a network's classification head.

The head is the last ``nn.Linear`` the network registers (SqueezeNet: its final 1x1
convolution). That rule holds for every torchvision classifier and the baselines; it keeps
VGG's and MobileNetV3's pretrained hidden classifier layers, as transfer learning should.
A timm model names its own through ``get_classifier()``, which may give two (a distilled
DeiT's ``head`` and ``head_dist``, whose logits it averages): the head's name is then both,
joined by a comma, and ``within_head`` tells any parameter of either.
"""

from __future__ import annotations

from torch import nn

from tlcli.core.errors import ModelError


def head_names(head_name: str) -> list[str]:
    return head_name.split(",")


def within_head(name: str, head_name: str) -> bool:
    """Whether the parameter or module ``name`` belongs to the head (to either of two)."""
    return any(name == head or name.startswith(head + ".") for head in head_names(head_name))


def _timm_classifiers(model: nn.Module) -> str | None:
    """The names of what timm's ``get_classifier()`` gives: one head, or two (each a Linear, or a
    module around one, as LeViT's NormLinear); None without one (num_classes=0 gives Identity)."""
    if not hasattr(model, "get_classifier") or not hasattr(model, "reset_classifier"):
        return None
    given = model.get_classifier()
    heads = given if isinstance(given, (tuple, list)) else (given,)
    names = [name for head in heads if any(True for _ in head.parameters())
             for name, module in model.named_modules() if module is head]
    return ",".join(names) if names and len(names) == len(heads) else None


def find_head(model: nn.Module) -> str:
    """Dotted name of the module that produces the logits (of both, for a two-headed timm model)."""
    timm_heads = _timm_classifiers(model)
    if timm_heads:
        return timm_heads
    if hasattr(model, "get_classifier") and hasattr(model, "reset_classifier"):  # timm built without classes: no head to find
        raise ModelError(f"{type(model).__name__} has no classification head (a timm model without classes); give --num-classes")
    linear = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if linear:
        return linear[-1]
    convs = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d) and name.startswith("classifier")]
    if convs:
        return convs[-1]
    raise ModelError(f"cannot find a classification head in {type(model).__name__}")


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, attr = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), attr


def _preceding_dropout(parent: nn.Module, attr: str) -> nn.Dropout | None:
    if isinstance(parent, nn.Sequential) and attr.isdigit() and int(attr) > 0:
        before = parent[int(attr) - 1]
        if isinstance(before, nn.Dropout):
            return before
    return None


def preceding_dropout(model: nn.Module, head_name: str) -> nn.Dropout | None:
    """The Dropout layer right before the head, when the architecture has one."""
    return _preceding_dropout(*_parent(model, head_name))


def head_dropout(model: nn.Module, head_name: str) -> float:
    dropout = preceding_dropout(model, head_name)
    return dropout.p if dropout is not None else 0.0


def replace_head(model: nn.Module, head_name: str, num_classes: int, dropout: float | None) -> str:
    """Give the model a freshly initialised head for ``num_classes``; returns the head's name.

    ``dropout`` None keeps the architecture's own dropout before the head; a value sets it,
    adding a Dropout layer when the architecture has none.
    """
    if num_classes < 2:
        raise ModelError(f"the number of classes must be at least 2, got {num_classes}")
    if _timm_classifiers(model) == head_name:  # timm's own reset replaces every head it has, whatever its kind
        model.reset_classifier(num_classes)
        return find_head(model)
    parent, attr = _parent(model, head_name)
    old = getattr(parent, attr)
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes)
    else:
        new = nn.Conv2d(old.in_channels, num_classes, kernel_size=1)
    existing = _preceding_dropout(parent, attr)
    if dropout is not None and existing is not None:
        existing.p = dropout
    if dropout and existing is None:
        setattr(parent, attr, nn.Sequential(nn.Dropout(dropout), new))
        return f"{head_name}.1"
    setattr(parent, attr, new)
    return head_name
