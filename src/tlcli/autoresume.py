"""``--resume auto``: the one line a cron job needs, whatever the last run of it left.

The run folder decides: no checkpoint (a new folder, or a run killed before its first epoch
ended) starts the run; a checkpoint resumes it, whatever killed it; a checkpoint that completed
its epochs but whose run was killed before it finished is finished; a finished run is left as it
is and reported at once. The same line may run again and again until the run is done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from tlcli.checkpoint import load_checkpoint
from tlcli.config import FinetuneConfig, TrainConfig
from tlcli.engine.distributed import is_main_process, on_main, process_group
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
    folder = _folder(config.run.out, config.run.overwrite)
    asked = config.to_dict()
    with process_group(config.run.device):
        status, path = on_main(lambda: _decide(folder, config.run.epochs, lambda recorded: _refuse_another_run(folder, asked, recorded)))
        if status == "started":
            return _started(lambda: train(config, observer=observer), observer)
        return _go_on(status, Path(path), config.run.epochs, observer)


def finetune_or_resume(config: FinetuneConfig, *, observer: Observer | None = None) -> RunResult:
    overrides = dict(config.run_overrides)
    folder = _folder(overrides.get("out"), overrides.get("overwrite", False))
    source = resolve_checkpoint(config.source)

    def same_parent(recorded: dict[str, Any]) -> None:
        if Path(recorded.get("parent") or "").resolve() != source.resolve():
            raise TlcliError(f"{folder} holds a run fine-tuned from {recorded.get('parent')}, not from {source}; give --out another folder")

    device = overrides.get("device") or load_checkpoint(source)["config"]["run"]["device"]
    with process_group(device):
        status, path = on_main(lambda: _decide(folder, config.epochs, same_parent, whole=True))
        if status == "started":
            return _started(lambda: finetune(config, observer=observer), observer)
        return _go_on(status, Path(path), config.epochs, observer)


def _folder(out: str | None, overwrite: bool) -> Path:
    if not out:
        raise ConfigError("--resume auto needs --out: the run folder that the same command line resumes each time it runs")
    if overwrite:
        raise ConfigError("--resume auto and --overwrite contradict each other: one continues the run in --out, the other starts it anew")
    return Path(out)


def _decide(folder: Path, epochs: int, check: Callable[[dict[str, Any]], None], *, whole: bool = False) -> tuple[str, str | None]:
    """Which of the four things to do, decided by rank 0 alone (under torchrun the others follow),
    with what the run's log says of it: started, resumed, finished or already finished."""
    path = resumable(folder / "last.pt")[0]
    if not path.is_file():
        return "started", None
    checkpoint = load_checkpoint(path)
    check(checkpoint if whole else checkpoint["config"])
    holder = RunFolder(folder).in_use_by()
    if holder:  # overlapping cron runs: the earlier one goes on, this one leaves it alone
        raise TlcliError(f"run folder {folder} is in use by {holder}: the run is still going; this command leaves it to finish")
    progress = checkpoint["progress"]
    done = progress["stopped_early"] or progress["epoch"] >= epochs
    if done and not (folder / LOCK).exists():  # a .lock left behind marks a run killed before it finished
        with RunFolder(folder).open(fresh=False) as run:  # nobody else writes while the line lands
            run.log(f"--resume auto: already finished: {len(checkpoint['history'])} epochs, nothing to do")
        return "already finished", str(path)
    status = "finished" if done else "resumed"
    RunFolder(folder).log(f"--resume auto: {status}: {_why(status, checkpoint)}")
    return status, str(path)


def _why(status: str, checkpoint: dict[str, Any]) -> str:
    if status == "finished":
        return "its checkpoint had completed its epochs"
    if status == "resumed":
        return f"from epoch {checkpoint['history'][-1]['epoch']}, which last.pt holds"
    return f"{len(checkpoint['history'])} epochs, nothing to do"


def _started(run: Callable[[], RunResult], observer: Observer | None) -> RunResult:
    """A started run's log.txt is written anew when it begins: the line goes in once it exists."""
    (observer or Observer()).info("--resume auto: started: the run folder held no checkpoint")
    result = run()
    result.status = "started"
    if is_main_process():
        RunFolder(result.run_dir).log("--resume auto: started")
    return result


def _go_on(status: str, path: Path, epochs: int, observer: Observer | None) -> RunResult:
    checkpoint = load_checkpoint(path)
    (observer or Observer()).info(f"--resume auto: {status}: {_why(status, checkpoint)}")
    if status == "already finished":
        config = checkpoint["config"]["run"]
        result = RunResult(path.parent, checkpoint["phase"], config["monitor"], Progress(**checkpoint["progress"]), checkpoint["history"],
                           checkpoint["model"]["parameters"], start=checkpoint.get("start"), head_fit=checkpoint.get("head_fit"))
    else:
        result = resume(path, epochs=epochs, observer=observer)
    result.status = status
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
