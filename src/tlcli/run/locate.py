"""Where runs live and finding one again from what the user typed: ``checkpoints_root``, a new
run's default name, ``checkpoints/latest``, and a checkpoint from a path, a run folder or a name."""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

from tlcli.core.errors import CheckpointError

LATEST = "latest"


def checkpoints_root() -> Path:
    """``$TLCLI_CHECKPOINTS_DIR``, else ``./checkpoints``."""
    return Path(os.environ.get("TLCLI_CHECKPOINTS_DIR", "checkpoints"))


def default_run_name(data: str, arch: str, suffix: str = "") -> str:
    name = Path(data).name if Path(data).name not in ("", ".", "..") else Path(data).resolve().name or "data"  # never a hidden folder
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{name}-{arch.replace(':', '_')}{suffix}")
    return f"{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def point_latest(run_dir: Path) -> None:
    """``checkpoints/latest`` -> ``run_dir``, wherever ``--out`` put it: relative for a run
    under checkpoints/ (the folder can move), else absolute. Replaced atomically; the
    temporary link's name is fixed, so the next run replaces one that a kill left behind."""
    root = checkpoints_root()
    link, temporary = root / LATEST, root / f".{LATEST}.tmp"
    run, base = Path(run_dir).resolve(), root.resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
        if temporary.is_symlink() or temporary.exists():
            temporary.unlink()
        temporary.symlink_to(os.path.relpath(run, base) if run.is_relative_to(base) else run)
        os.replace(temporary, link)
    except OSError:
        pass  # a file system without symlinks still has the run; only the shortcut is missing


def resolve_checkpoint(spec: str | None, *, prefer: str = "best.pt") -> Path:
    """A checkpoint file from a path, a run folder, a run name under checkpoints/, or nothing (latest)."""
    root = checkpoints_root()
    latest = root / LATEST
    # Name the run the pointer points at, so messages and outputs show the real folder.
    candidates = [Path(spec), root / spec] if spec else [root / os.readlink(latest) if latest.is_symlink() else latest]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
        if candidate.is_dir():
            for name in (prefer, "best.pt", "last.pt"):
                if (candidate / name).is_file():
                    return candidate / name
            raise CheckpointError(f"run folder {candidate} holds no best.pt or last.pt")
    if not spec:
        raise CheckpointError(f"no run yet in {root}/: train one first, or name a checkpoint")
    raise CheckpointError(f"no checkpoint or run '{spec}' (looked for a file, a run folder, and {root / spec})")
