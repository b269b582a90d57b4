"""torchvision, imported without dragging in ``torch._dynamo``.

``torchvision.ops.roi_align`` imports ``torch._dynamo.utils`` at module level for one helper
that only ``roi_align`` itself calls, and that import loads all of dynamo: 2 s of every tlcli
command's start-up on 2 cores (importing torchvision falls from 2.2 s to 0.25 s without it).
So torchvision is imported with a stand-in for that one module whose helper loads the real
one on first use; the stand-in leaves ``sys.modules`` as soon as torchvision is in, so
``torch.compile`` and anything else importing dynamo get the real thing. Modules of tlcli that
use torchvision import it from here: ``from tlcli.core.vision import torchvision``.
"""

from __future__ import annotations

import importlib
import sys
import types

_DYNAMO_UTILS = "torch._dynamo.utils"


def _is_compile_supported(device_type):
    from torch._dynamo.utils import is_compile_supported

    return is_compile_supported(device_type)


class _StandIn(types.ModuleType):
    """``torch._dynamo.utils`` while torchvision imports. Anything else asked of it (a torchvision
    that uses more of dynamo) gets the real module; dunder probes (``inspect`` scans every module
    for ``__file__``) do not load it."""

    is_compile_supported = staticmethod(_is_compile_supported)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if sys.modules.get(_DYNAMO_UTILS) is self:
            del sys.modules[_DYNAMO_UTILS]
        return getattr(importlib.import_module(_DYNAMO_UTILS), name)


def _import_torchvision():
    if "torchvision" in sys.modules or _DYNAMO_UTILS in sys.modules:
        import torchvision

        return torchvision
    import torch  # noqa: F401  (the real package first: the stand-in replaces one of its submodules only)

    stand_in = _StandIn(_DYNAMO_UTILS)
    sys.modules[_DYNAMO_UTILS] = stand_in
    try:
        import torchvision
    finally:
        if sys.modules.get(_DYNAMO_UTILS) is stand_in:
            del sys.modules[_DYNAMO_UTILS]
    return torchvision


torchvision = _import_torchvision()
