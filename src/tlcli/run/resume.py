"""Going on with a run: ``resume`` (``--resume RUN``), and ``--resume auto``, the one line a
cron job needs, whatever the last run of it left.

The run folder decides: no checkpoint (a new folder, or a run killed before its first epoch
ended) starts the run; a checkpoint resumes it, whatever killed it; a checkpoint that completed
its epochs but whose run was killed before it finished is finished; a finished run is left as it
is and reported at once. The same line may run again and again until the run is done.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from tlcli.run.checkpoint import load_checkpoint
from tlcli.core.config import FinetuneConfig, TrainConfig
from tlcli.engine.distributed import is_main_process, on_main, process_group, world_size
from tlcli.engine.loop import Observer
from tlcli.engine.state import Progress
from tlcli.core.errors import ConfigError, TlcliError
from tlcli.run.build import Start
from tlcli.run.repair import recover, resumable
from tlcli.run.marker import foreign_checkpoint, run_finished
from tlcli.run.folder import RunFolder
from tlcli.run.lock import holder as in_use_by
from tlcli.run.record import EpochRecord
from tlcli.run.locate import resolve_checkpoint
from tlcli.run.finetune import finetune
from tlcli.run.result import RunResult
from tlcli.run.story import Run

# Settings that say how a run computes, not which run it is: a cron line may change them.
_HOW = {("run", name) for name in ("epochs", "out", "overwrite", "device", "amp", "workers", "compile", "cache_dir", "cache_images",
                                   "cache_features", "tensorboard", "channels_last", "sync_bn")}


def fine_tuned_from(recorded: dict[str, Any], parent: Path) -> bool:
    """Whether ``recorded`` (a checkpoint, or a run's config.json) is a phase-2 run of ``parent``."""
    return Path(recorded.get("parent") or "").resolve() == parent.resolve()


def resume(path: Path, *, epochs: int | None = None, observer: Observer | None = None, parent: Path | None = None) -> RunResult:
    """Continue a run from its checkpoint, after making its folder whole again (``repair.recover``); a
    run stopped after its last epoch's checkpoint but before its finish is finished without training.
    Under torchrun, with as many processes as the run had: each goes on with its own shard. With
    ``parent``, only a phase-2 run fine-tuned from that checkpoint is resumed."""
    path, fallback = resumable(Path(path) / "last.pt" if Path(path).is_dir() else Path(path))
    checkpoint = load_checkpoint(path)
    if parent is not None and not fine_tuned_from(checkpoint, parent):
        raise TlcliError(f"{path} is not a phase-2 run fine-tuned from {parent} (it is phase {checkpoint['phase']}, "
                         f"from {checkpoint.get('parent') or 'no parent'}); resume a phase-2 run of this parent")
    with process_group(checkpoint["config"]["run"]["device"]):
        return _resume(path, fallback, checkpoint, epochs, observer or Observer())


def _resume(path: Path, fallback: Path | None, checkpoint: dict[str, Any], epochs: int | None, observer: Observer) -> RunResult:
    foreign = foreign_checkpoint(path, checkpoint)
    if foreign:
        raise TlcliError(f"{foreign}: a run is resumed only in its own folder; resume it there, or start phase 2 from it with "
                         f"tlcli finetune --from {path}")
    last = path.parent / "last.pt"
    if path.name != "last.pt" and last.exists() and load_checkpoint(last)["progress"]["epoch"] > checkpoint["progress"]["epoch"]:
        raise TlcliError(f"{path} is behind {last}; resume from {last}, or resuming would discard the epochs after it")
    notes = [f"{fallback} is missing (a kill during a run's first save leaves only best.pt): resuming from {path}, "
             f"epoch {checkpoint['history'][-1]['epoch']}"] if fallback else []
    trained_by, processes = checkpoint.get("world_size", 1), world_size()
    if trained_by != processes:
        raise TlcliError(
            f"{path} was trained by {trained_by} process{'es' if trained_by > 1 else ''} and this run has {processes}: resume it with "
            f"{trained_by} (tlcli train --resume {path} --nproc {trained_by}, or torchrun --nproc_per_node {trained_by}), so that the "
            "global batch and each process's share of the data stay as they were")

    def repair() -> tuple[list[str], bool, bool]:
        nonlocal checkpoint
        recovered, repaired, finished = recover(path, checkpoint, notes)
        replaced, checkpoint = recovered is not checkpoint, recovered
        return repaired, finished, replaced

    # Rank 0 repairs the folder; the others read the checkpoint again only where it replaced it.
    notes, finished, replaced = on_main(repair)
    if replaced and not is_main_process():
        checkpoint = load_checkpoint(path)
    config = TrainConfig.from_dict(checkpoint["config"])
    if epochs is not None:
        config = replace(config, run=replace(config.run, epochs=epochs))
    if checkpoint["progress"]["epoch"] >= config.run.epochs and not checkpoint["progress"]["stopped_early"] and finished:
        raise TlcliError(f"{path} already completed {config.run.epochs} epochs; raise the number of epochs to train further")
    start = Start(phase=checkpoint["phase"], checkpoint=checkpoint, resume=True)
    return Run(config, path.parent, fresh=False, start=start, parent=checkpoint.get("parent"), history=list(checkpoint["history"]),
               notes=notes).execute(observer)


def train_or_resume(config: TrainConfig, *, observer: Observer | None = None) -> RunResult:
    folder = _folder(config.run.out, config.run.overwrite)
    asked = config.to_dict()
    with process_group(config.run.device):
        status, path, why = on_main(lambda: _decide(folder, config.run.epochs, lambda recorded: _refuse_another_run(folder, asked, recorded)))
        if status == "started":
            return _started(lambda: Run(config).execute(observer), why, observer)
        return _go_on(status, Path(path), why, config.run.epochs, observer)


def finetune_or_resume(config: FinetuneConfig, *, observer: Observer | None = None) -> RunResult:
    folder = _folder(config.out, config.overwrite)
    source = resolve_checkpoint(config.source)

    def same_parent(recorded: dict[str, Any]) -> None:
        if not fine_tuned_from(recorded, source):
            raise TlcliError(f"{folder} holds a run fine-tuned from {recorded.get('parent')}, not from {source}; give --out another folder")

    device = {(section, name): value for section, name, value in config.overrides}.get(("run", "device")) or \
        load_checkpoint(source)["config"]["run"]["device"]
    with process_group(device):
        status, path, why = on_main(lambda: _decide(folder, config.epochs, same_parent, whole=True))
        if status == "started":
            return _started(lambda: finetune(config, observer=observer), why, observer)
        return _go_on(status, Path(path), why, config.epochs, observer)


def _folder(out: str | None, overwrite: bool) -> Path:
    if not out:
        raise ConfigError("--resume auto needs --out: the run folder that the same command line resumes each time it runs")
    if overwrite:
        raise ConfigError("--resume auto and --overwrite contradict each other: one continues the run in --out, the other starts it anew")
    return Path(out)


def _decide(folder: Path, epochs: int, check: Callable[[dict[str, Any]], None], *,
            whole: bool = False) -> tuple[str, str | None, str]:
    """Which of the four things to do (started, resumed, finished or already finished), the
    checkpoint and why, decided by rank 0 alone (under torchrun the others follow); logged."""
    path = resumable(folder / "last.pt")[0]
    if not path.is_file():
        return "started", None, "the run folder held no checkpoint"
    checkpoint = load_checkpoint(path)
    check(checkpoint if whole else checkpoint["config"])
    holder = in_use_by(folder)
    if holder:  # overlapping cron runs: the earlier one goes on, this one leaves it alone
        raise TlcliError(f"run folder {folder} is in use by {holder}: the run is still going; this command leaves it to finish")
    progress = checkpoint["progress"]
    done = progress["stopped_early"] or progress["epoch"] >= epochs
    if done and run_finished(folder):
        why = f"{len(checkpoint['history'])} epochs, nothing to do"
        with RunFolder(folder).open(fresh=False) as run:  # nobody else writes while the line lands
            run.record.log(f"--resume auto: already finished: {why}")
        return "already finished", str(path), why
    status, why = ("finished", f"{path.name} had completed its epochs; the run had not finished") if done else (
        "resumed", f"from epoch {checkpoint['history'][-1]['epoch']}, which {path.name} holds")
    EpochRecord(folder).log(f"--resume auto: {status}: {why}")
    return status, str(path), why


def _started(run: Callable[[], RunResult], why: str, observer: Observer | None) -> RunResult:
    """A started run's log.txt is written anew when it begins: the line goes in once it exists."""
    (observer or Observer()).info(f"--resume auto: started: {why}")
    result = run()
    result.status = "started"
    if is_main_process():
        EpochRecord(result.run_dir).log("--resume auto: started")
    return result


def _go_on(status: str, path: Path, why: str, epochs: int, observer: Observer | None) -> RunResult:
    (observer or Observer()).info(f"--resume auto: {status}: {why}")
    if status == "already finished":
        checkpoint = load_checkpoint(path)
        config = checkpoint["config"]["run"]
        result = RunResult(path.parent, checkpoint["phase"], config["monitor"], Progress(**checkpoint["progress"]), checkpoint["history"],
                           checkpoint["model"]["parameters"], start=checkpoint.get("start"), head_fit=checkpoint.get("head_fit"),
                           trial=checkpoint.get("trial"))
    else:
        result = resume(path.parent / "last.pt", epochs=epochs, observer=observer)  # which says when best.pt stands in
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
