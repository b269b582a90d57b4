"""Finding and replacing a network's classification head.

The head is the last ``nn.Linear`` the network registers (SqueezeNet: its final 1x1
convolution). That rule holds for every torchvision classifier and the baselines; it keeps
VGG's and MobileNetV3's pretrained hidden classifier layers, as transfer learning should.
"""

from __future__ import annotations

from torch import nn

from tlcli.errors import ModelError


def find_head(model: nn.Module) -> str:
    """Dotted name of the module that produces the logits."""
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
