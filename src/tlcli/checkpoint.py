"""The checkpoint: one file, a plain dict, safe to load, never half-written.

Only tensors, numbers, strings, lists, tuples and dicts go in, so ``torch.load(...,
weights_only=True)`` reads it without running pickled code. Writes go to a temporary file in
the same folder, are flushed and fsynced, then ``os.replace``d over the target: a crash or a
full disk leaves the previous file intact.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from tlcli import __version__
from tlcli.errors import CheckpointError
from tlcli.models.weights import safe_torch_load

FORMAT = "tlcli.checkpoint"
VERSION = 1
REQUIRED_KEYS = ("model", "classes", "preprocess", "freeze", "state_dict", "config", "history", "data")


def stamp(content: dict[str, Any]) -> dict[str, Any]:
    """The header every checkpoint carries, in front of its content."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "tlcli_version": __version__,
        "torch_version": str(torch.__version__),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **content,
    }


def atomic_save(obj: Any, path: Path, *also: Path) -> None:
    """torch.save ``obj`` to ``path`` (and to each of ``also``) so that readers see the old file
    or the new one, never a part."""
    _write_atomically(Path(path), lambda stream: torch.save(obj, stream))
    for target in map(Path, also):
        _same_file(Path(path), target)


def _same_file(source: Path, target: Path) -> None:
    """``target`` becomes a hard link to ``source``'s current contents (no copy, no second
    fsync); a later replace of ``source`` leaves it alone. Copies where links are refused."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.link")
    try:
        temporary.unlink(missing_ok=True)
        os.link(source, temporary)
        os.replace(temporary, target)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink()
        with open(source, "rb") as stream:
            _write_atomically(target, lambda out: shutil.copyfileobj(stream, out, 1 << 20))
        return
    _fsync_folder(target.parent)


def write_file_atomically(data: bytes, path: Path) -> None:
    _write_atomically(Path(path), lambda stream: stream.write(data))


def _write_atomically(path: Path, write) -> None:
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # a missing or read-only folder: nothing was written
        raise CheckpointError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise CheckpointError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); harmless where folders cannot be opened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read and validate a tlcli checkpoint; every failure is one CheckpointError sentence."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    loaded = safe_torch_load(path, CheckpointError, "checkpoint")
    if not isinstance(loaded, dict) or loaded.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a tlcli checkpoint (a bare state dict can be used with --weights)")
    version = loaded.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path} has no valid checkpoint format version (found {version!r}); it is damaged")
    if version > VERSION:
        raise CheckpointError(
            f"{path} is checkpoint format version {version}, newer than this tlcli reads ({VERSION}); upgrade tlcli"
        )
    missing = [key for key in REQUIRED_KEYS if key not in loaded]
    if missing:
        raise CheckpointError(f"{path} is incomplete: it lacks {', '.join(missing)}")
    return migrate(loaded)


def migrate(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Bring an older checkpoint up to VERSION. Version 1 is the first; nothing to do yet."""
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any]):
    """Rebuild the network a checkpoint describes, with its weights and freeze state."""
    from tlcli.config import ModelConfig
    from tlcli.data.transforms import Preprocess
    from tlcli.models.registry import build_model

    spec = checkpoint["model"]
    config = ModelConfig(
        arch=spec["arch"],
        weights="none",
        dropout=spec["dropout"],
        hidden=tuple(spec.get("hidden") or (128, 64)),
        input_size=checkpoint["preprocess"]["input_size"],
        freeze="none",
    )
    built = build_model(config, num_classes=spec["num_classes"], load_weights=False)
    try:
        built.model.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(
            f"the checkpoint's weights do not fit its architecture {spec['arch']} ({first[1].strip() if len(first) > 1 else first[0]})"
        ) from None
    frozen = set(checkpoint["freeze"]["frozen"])
    for name, parameter in built.model.named_parameters():
        parameter.requires_grad_(name not in frozen)
    built.frozen = sorted(frozen)
    built.freeze_policy = checkpoint["freeze"]["policy"]
    built.weights = spec["weights"]
    built.preprocess = Preprocess.from_dict(checkpoint["preprocess"])
    return built
