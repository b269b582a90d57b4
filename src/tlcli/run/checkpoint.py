"""The checkpoint: one file, a plain dict, safe to load, never half-written.

Only tensors, numbers, strings, lists, tuples and dicts go in, so ``torch.load(...,
weights_only=True)`` reads it without running pickled code. Writes go through
``tlcli.core.files``: a crash or a full disk leaves the previous file intact.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from tlcli.core.version import __version__
from tlcli.engine.device import restore_rng_state, rng_state
from tlcli.engine.distributed import world_size
from tlcli.engine.state import Progress
from tlcli.engine.optim import continue_schedule
from tlcli.core.errors import CheckpointError
from tlcli.core.files import write_atomically
from tlcli.models.weights import safe_torch_load

FORMAT = "tlcli.checkpoint"  # the format's name, stored in every checkpoint: not the module's
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
    or the new one, never a part. ``also`` gets it first: a run killed between the two has a
    best.pt one epoch ahead of its last.pt, which resume can repair, never one behind it."""
    write_atomically(Path(path), lambda stream: torch.save(obj, stream), *map(Path, also))


def training_checkpoint(prepared, *, progress, history: list[dict], lineage: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint of a run at the end of an epoch: the model and how to rebuild it, its
    preprocessing and classes, the whole training state for an exact resume, and the history.

    ``prepared`` is the run's ``tlcli.run.build.Prepared``; ``lineage`` holds ``phase``, ``parent``
    (phase 1's checkpoint, for phase 2), ``start`` (validation before phase 2's first step) and
    ``head_fit`` (the linear probe's choice)."""
    built, trainer, config, data = prepared.built, prepared.trainer, prepared.config, prepared.data
    return stamp({
        "model": {**built.describe(), "hidden": list(config.model.hidden)},
        "classes": data.classes,
        "preprocess": built.preprocess.to_dict(),
        "freeze": {"policy": built.freeze_policy, "frozen": built.frozen, "bn_train": config.model.bn_train},
        **lineage,
        "state_dict": {k: v.detach().cpu() for k, v in built.model.state_dict().items()},
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
        "scaler": trainer.scaler.state_dict(),
        "average": trainer.average.state_dict() if trainer.average is not None else None,
        "rng": rng_state(),
        "progress": asdict(progress),
        "history": history,
        "config": config.to_dict(),
        "data": {**data.summary(), "split": data.split_info},
        "world_size": world_size(),  # a resume needs as many processes, each to continue its shard
    })


def restore_training_state(checkpoint: dict[str, Any], trainer, *, total_steps: int) -> Progress:
    """Put a resumed run's optimiser, schedule, scaler and random streams back where the
    checkpoint left them (``trainer``: an ``engine.loop.Trainer``); returns its progress."""
    trainer.optimizer.load_state_dict(checkpoint["optimizer"])
    if trainer.scheduler is not None and checkpoint.get("scheduler"):
        trainer.scheduler.load_state_dict(checkpoint["scheduler"])
        continue_schedule(trainer.scheduler, trainer.optimizer, total_steps=total_steps)
    trainer.scaler.load_state_dict(checkpoint["scaler"])
    restore_rng_state(checkpoint["rng"])
    # Checkpoints from before phase_best waited on their best, as early stopping then did.
    recorded = checkpoint["progress"]
    return Progress(**{"phase_best": recorded["best_metric"] if recorded["epoch"] else None, **recorded, "stopped_early": False})


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read and validate a tlcli checkpoint; every failure is one CheckpointError sentence."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    loaded = safe_torch_load(path, CheckpointError, "checkpoint")
    if not isinstance(loaded, dict) or loaded.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a tlcli checkpoint (a bare state dict can be used as weights)")
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
    problem = metadata_problem(loaded)
    if problem:
        raise CheckpointError(f"{path} has invalid metadata: {problem}; it is damaged or was not written by tlcli")
    return migrate(loaded)


# Bounds far beyond any real model, small enough that a hostile value cannot ask for terabytes.
MAX_CLASSES = 100_000
MAX_INPUT_SIZE = 4096


def _is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def metadata_problem(checkpoint: dict[str, Any]) -> str | None:
    """What is wrong with the fields a model is rebuilt from, before anything is allocated by them;
    None when they are sound."""
    model, preprocess, classes = checkpoint["model"], checkpoint["preprocess"], checkpoint["classes"]
    if not isinstance(model, dict) or not isinstance(model.get("arch"), str):
        return "model.arch is not a name"
    if not _is_int(model.get("num_classes"), 1, MAX_CLASSES):
        return f"model.num_classes {model.get('num_classes')!r} is not a whole number from 1 to {MAX_CLASSES:,}"
    if not isinstance(classes, list) or len(classes) != model["num_classes"] or not all(isinstance(c, str) for c in classes):
        return f"classes is not a list of {model['num_classes']} names"
    hidden = model.get("hidden") or []
    if not isinstance(hidden, list) or not all(_is_int(width, 1, 65_536) for width in hidden):
        return f"model.hidden {hidden!r} is not a list of layer widths from 1 to 65,536"
    if not _is_number(model.get("dropout", 0.0)) or not 0.0 <= model.get("dropout", 0.0) < 1.0:
        return f"model.dropout {model.get('dropout')!r} is not in [0, 1)"
    if not isinstance(preprocess, dict):
        return "preprocess is not a table"
    size, resize = preprocess.get("input_size"), preprocess.get("resize_size")
    if not _is_int(size, 1, MAX_INPUT_SIZE) or not _is_int(resize, 1, MAX_INPUT_SIZE):
        return f"preprocess input_size {size!r} / resize_size {resize!r} are not whole numbers from 1 to {MAX_INPUT_SIZE}"
    channels, mean, std = preprocess.get("channels", 3), preprocess.get("mean"), preprocess.get("std")
    if channels not in (1, 3):
        return f"preprocess.channels {channels!r} is not 1 or 3"
    if not (isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == channels
            and all(map(_is_number, mean)) and all(_is_number(v) and v > 0 for v in std)):
        return f"preprocess mean {mean!r} / std {std!r} are not {channels} numbers each (std positive)"
    if not isinstance(checkpoint["state_dict"], dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint["state_dict"].values()):
        return "state_dict is not a table of tensors"
    freeze = checkpoint["freeze"]
    if not isinstance(freeze, dict) or not isinstance(freeze.get("frozen"), list) or not isinstance(freeze.get("policy"), str):
        return "freeze lacks its policy or its list of frozen parameters"
    return None


def migrate(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Bring an older checkpoint up to VERSION. Version 1 is the first; nothing to do yet."""
    return checkpoint


def checkpoint_model_config(checkpoint: dict[str, Any], *, freeze: str = "none"):
    """The ``ModelConfig`` that builds a checkpoint's network, without weights, under ``freeze``."""
    from tlcli.core.config import ModelConfig

    spec = checkpoint["model"]
    return ModelConfig(
        arch=spec["arch"],
        weights="none",
        dropout=spec["dropout"],
        hidden=tuple(spec.get("hidden") or (128, 64)),
        input_size=checkpoint["preprocess"]["input_size"],
        freeze=freeze,
    )


def model_from_checkpoint(checkpoint: dict[str, Any]):
    """Rebuild the network a checkpoint describes, with its weights and freeze state."""
    from tlcli.data.transforms import Preprocess
    from tlcli.models.registry import build_model

    spec, config = checkpoint["model"], checkpoint_model_config(checkpoint)
    with torch.device("meta"):  # shapes only, nothing allocated: a hostile file cannot ask for terabytes
        skeleton = build_model(config, num_classes=spec["num_classes"], load_weights=False).model.state_dict()
    state_dict = checkpoint["state_dict"]
    for name, tensor in skeleton.items():
        if name in state_dict and tuple(state_dict[name].shape) != tuple(tensor.shape):
            raise CheckpointError(f"the checkpoint's weights do not fit its architecture {spec['arch']} ({name} is "
                                  f"{tuple(state_dict[name].shape)} where the model described needs {tuple(tensor.shape)})")
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
