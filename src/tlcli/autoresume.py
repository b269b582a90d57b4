"""``--resume auto``: the one line a cron job needs, whatever the last run of it left.

The run folder decides: no checkpoint (a new folder, or a run killed before its first epoch
ended) starts the run; a checkpoint resumes it, whatever killed it; a checkpoint that completed
its epochs but whose run was killed before it finished is finished; a finished run is left as it
is and reported at once. The same line may run again and again until the run is done.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from tlcli.checkpoint import load_checkpoint
from tlcli.config import FinetuneConfig, TrainConfig
from tlcli.engine.loop import Observer, Progress
from tlcli.errors import ConfigError, TlcliError
from tlcli.recovery import resumable
from tlcli.run_files import LOCK
from tlcli.runs import RunFolder, resolve_checkpoint
from tlcli.training import RunResult, finetune, resume, train

# Settings that say how a run computes, not which run it is: a cron line may change them.
_HOW = {("run", name) for name in ("epochs", "out", "overwrite", "device", "amp", "workers", "compile", "cache_dir", "cache_images",
                                   "cache_features", "tensorboard", "channels_last", "sync_bn")}


def train_or_resume(config: TrainConfig, *, observer: Observer | None = None) -> RunResult:
    observer = observer or Observer()
    folder = _folder(config.run.out, config.run.overwrite)
    checkpoint_path = resumable(folder / "last.pt")[0]
    if not checkpoint_path.is_file():
        _announce("started", "the run folder held no checkpoint", observer)
        return _logged(train(config, observer=observer), "started")
    checkpoint = load_checkpoint(checkpoint_path)
    _refuse_another_run(folder, config.to_dict(), checkpoint["config"])
    return _continue(checkpoint_path, checkpoint, config.run.epochs, observer)


def finetune_or_resume(config: FinetuneConfig, *, observer: Observer | None = None) -> RunResult:
    observer = observer or Observer()
    overrides = dict(config.run_overrides)
    folder = _folder(overrides.get("out"), overrides.get("overwrite", False))
    checkpoint_path = resumable(folder / "last.pt")[0]
    if not checkpoint_path.is_file():
        _announce("started", "the run folder held no checkpoint", observer)
        return _logged(finetune(config, observer=observer), "started")
    checkpoint = load_checkpoint(checkpoint_path)
    source = resolve_checkpoint(config.source)
    if Path(checkpoint.get("parent") or "").resolve() != source.resolve():
        raise TlcliError(f"{folder} holds a run fine-tuned from {checkpoint.get('parent')}, not from {source}; give --out another folder")
    return _continue(checkpoint_path, checkpoint, config.epochs, observer)


def _folder(out: str | None, overwrite: bool) -> Path:
    if not out:
        raise ConfigError("--resume auto needs --out: the run folder that the same command line resumes each time it runs")
    if overwrite:
        raise ConfigError("--resume auto and --overwrite contradict each other: one continues the run in --out, the other starts it anew")
    return Path(out)


def _continue(path: Path, checkpoint: dict[str, Any], epochs: int, observer: Observer) -> RunResult:
    holder = RunFolder(path.parent).in_use_by()
    if holder:  # overlapping cron runs: the earlier one goes on, this one leaves it alone
        raise TlcliError(f"run folder {path.parent} is in use by {holder}: the run is still going; this command leaves it to finish")
    progress = checkpoint["progress"]
    done = progress["stopped_early"] or progress["epoch"] >= epochs
    if done and not (path.parent / LOCK).exists():  # a .lock left behind marks a run killed before it finished
        return _already_finished(path, checkpoint, observer)
    status, why = ("finished", "its checkpoint had completed its epochs") if done else (
        "resumed", f"from epoch {checkpoint['history'][-1]['epoch']}, which last.pt holds")
    _announce(status, why, observer, folder=path.parent)
    result = resume(path, epochs=epochs, observer=observer)
    result.status = status
    return result


def _already_finished(path: Path, checkpoint: dict[str, Any], observer: Observer) -> RunResult:
    config = checkpoint["config"]["run"]
    result = RunResult(path.parent, checkpoint["phase"], config["monitor"], Progress(**checkpoint["progress"]), checkpoint["history"],
                       checkpoint["model"]["parameters"], start=checkpoint.get("start"), head_fit=checkpoint.get("head_fit"))
    result.status = "already finished"
    with RunFolder(path.parent).open(fresh=False):  # nobody else is writing, so the log line lands whole
        _announce(result.status, f"{len(checkpoint['history'])} epochs, nothing to do", observer, folder=path.parent)
    return result


def _announce(status: str, why: str, observer: Observer, *, folder: Path | None = None) -> None:
    """Which of the four things the line does, on stderr and, where the run's log goes on, in log.txt."""
    observer.info(f"--resume auto: {status}: {why}")
    if folder is not None:
        RunFolder(folder).log(f"--resume auto: {status}: {why}")


def _logged(result: RunResult, status: str) -> RunResult:
    """A started run's log.txt is written anew when it begins: the line goes in once it exists."""
    result.status = status
    RunFolder(result.run_dir).log(f"--resume auto: {status}")
    return result


def _refuse_another_run(folder: Path, asked: dict[str, dict], recorded: dict[str, dict]) -> None:
    """The folder must hold the run this line describes: a changed learning rate or data set is
    another run, which resuming would silently ignore."""
    differences = [f"{section}.{name} {value!r} here, {recorded.get(section, {}).get(name)!r} there"
                   for section, values in asked.items() for name, value in values.items()
                   if value is not None and (section, name) not in _HOW and not _same(recorded.get(section, {}).get(name), value)]
    if differences:
        raise TlcliError(f"{folder} holds a run with other settings ({'; '.join(differences[:3])}): give --out another folder, "
                         "or start that run anew with --overwrite instead of --resume auto")


def _same(recorded: Any, asked: Any) -> bool:
    """A tuple may come back from a checkpoint as a list."""
    plain = lambda value: list(value) if isinstance(value, tuple) else value  # noqa: E731
    return plain(recorded) == plain(asked)
