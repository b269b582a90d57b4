"""``train``, ``finetune`` and ``resume``: where a run starts, then prepare, fit, finish.

The three differ only in where the weights, the freeze policy, the optimiser state and the
history start from (a ``Start``); ``run_plan`` is the same short sequence for all of them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from signal import SIGINT
from typing import Any

import torch

from tlcli.checkpoint import atomic_save, load_checkpoint, training_checkpoint
from tlcli.config import FinetuneConfig, TrainConfig
from tlcli.engine.distributed import is_main_process, on_main, process_group, reduce_sums, world_size
from tlcli.engine.loop import Observer, Progress, Trainer, evaluate, fit
from tlcli.errors import Interrupted, TlcliError
from tlcli.models.freeze import count_parameters
from tlcli.prepare import Prepared, Start, check_before_data, prepare
from tlcli.run_files import checkpoint_run, foreign_checkpoint
from tlcli.runs import RunFolder, checkpoints_root, default_run_name, resolve_checkpoint
from tlcli.stopping import STOP_AFTER_EPOCH, Terminated, deferred, signal_name, stop_asked, stopped_by


@dataclass
class RunResult:
    run_dir: Path
    phase: int
    monitor: str
    progress: Progress
    history: list[dict]
    parameters: dict[str, int]
    start: dict[str, float] | None = None  # finetune: validation before phase 2's first step
    notes: list[str] = field(default_factory=list)
    head_fit: dict[str, Any] | None = None  # the linear probe's choice, when phase 1 was fitted as one
    status: str | None = None  # --resume auto: started | resumed | finished | already finished

    @property
    def files(self) -> dict[str, str]:
        names = ("best.pt", "last.pt", "config.json", "history.csv", "curves.png", "log.txt")
        return {name: str(self.run_dir / name) for name in names if (self.run_dir / name).exists()}

    def __repr__(self) -> str:
        document = self.to_dict()
        best = "no best epoch" if document["best_metric"] is None else \
            f"best {self.monitor} {document['best_metric']:.4f} at epoch {document['best_epoch']}"
        return f"RunResult('{self.run_dir}', phase {self.phase}, {document['epochs_run']} epochs, {best})"

    def to_dict(self) -> dict[str, Any]:
        """Epochs are numbered as the history numbers them, across phases (phase 2 of a 3-epoch
        phase 1 starts at epoch 4); ``epochs_run`` counts this phase's."""
        before = len(self.history) - self.progress.epoch  # epochs of earlier phases
        found = self.progress.best_metric is not None
        return {
            "run_dir": str(self.run_dir),
            "phase": self.phase,
            "monitor": self.monitor,
            "epochs_run": self.progress.epoch,
            # Phase 2's best epoch 0 is the phase-1 model it started from: the last epoch it inherited.
            "best_epoch": before + self.progress.best_epoch if found else None,
            "best_phase": (self.phase if self.progress.best_epoch else self.phase - 1) if found else None,
            "best_metric": self.progress.best_metric,
            "stopped_early": self.progress.stopped_early,
            "final": self.history[-1] if self.history else None,
            "start": self.start,
            "parameters": self.parameters,
            "files": self.files,
            "notes": self.notes,
            "head_fit": self.head_fit,
            "status": self.status,
        }


@dataclass
class RunPlan:
    """A run's place and lineage (its folder, whether it starts one, the epochs before it), and
    what an interrupt must know of it."""

    config: TrainConfig
    run_dir: Path
    fresh: bool
    start: Start = field(default_factory=Start)
    parent: str | None = None
    history: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what resuming repaired
    saved: int | None = None  # the epoch (history numbering) that last.pt holds, once this run has one
    logging: bool = False  # log.txt is this run's: the run has begun, or continues its folder


def train(config: TrainConfig, *, observer: Observer | None = None) -> RunResult:
    with process_group(config.run.device):
        # Rank 0's name for the folder: the others may read the clock a second later.
        run_dir = on_main(lambda: Path(config.run.out) if config.run.out else
                          checkpoints_root() / default_run_name(config.data.source, config.model.arch))
        return run_plan(RunPlan(config, run_dir, fresh=True), observer or Observer())


def finetune(config: FinetuneConfig, *, observer: Observer | None = None) -> RunResult:
    observer = observer or Observer()
    source = resolve_checkpoint(config.source)
    checkpoint = load_checkpoint(source)
    for warning in _source_warnings(source, checkpoint):
        observer.warning(warning)
    phase1 = TrainConfig.from_dict(checkpoint["config"])
    optim = replace(phase1.optim, **{"lr": config.lr, "backbone_lr_mult": config.backbone_lr_mult, **dict(config.optim_overrides)})
    # Phase 1's cache_features "on" would refuse the unfrozen backbone of phase 2.
    run = replace(phase1.run, **{"epochs": config.epochs, "monitor": config.monitor, "out": None, "overwrite": False, "cache_features": "auto",
                                 **dict(config.run_overrides)})
    train_config = replace(phase1, model=replace(phase1.model, bn_train=config.bn_train), optim=optim, run=run,
                           augment=replace(phase1.augment, **dict(config.augment_overrides)))
    start = Start(phase=checkpoint["phase"] + 1, checkpoint=checkpoint, freeze="none" if config.unfreeze == "all" else config.unfreeze)
    with process_group(run.device):
        run_dir = on_main(lambda: Path(run.out) if run.out else
                          source.parent.parent / default_run_name(phase1.data.source, phase1.model.arch, "-ft"))
        return run_plan(RunPlan(train_config, run_dir, fresh=True, start=start, parent=str(source), history=list(checkpoint["history"])),
                    observer)


def _source_warnings(source: Path, checkpoint: dict[str, Any]) -> list[str]:
    """Phase 2 refuses a phase 1 still training (its best.pt would change under it) and names a
    source that did not finish its epochs or is another run's checkpoint."""
    holder = RunFolder(source.parent).in_use_by()
    if holder:
        raise TlcliError(f"{source.parent} is still training ({holder}); fine-tune it once it has finished")
    warnings = [foreign] if (foreign := foreign_checkpoint(source, checkpoint)) else []
    last = source.parent / "last.pt"  # best.pt's own progress stops at its epoch, however far the run went
    progress = (load_checkpoint(last) if source != last and last.is_file() else checkpoint)["progress"]
    planned = checkpoint["config"]["run"]["epochs"]
    if progress["epoch"] < planned and not progress["stopped_early"]:
        warnings.append(f"{source} comes from a run that ran {progress['epoch']} of its {planned} epochs (it was stopped or killed): "
                        f"phase 2 starts from that model; finish phase 1 first with tlcli train --resume {source.parent}")
    return warnings


def run_plan(run: RunPlan, observer: Observer) -> RunResult:
    """Check, take the run folder, then prepare, fit, finish: a bad value, a locked folder or a
    finished one is refused before any image is read."""
    check_before_data(run.config, run.start)
    folder = RunFolder(run.run_dir)
    history = list(run.history)  # fit appends this run's epochs
    if run.start.resume:
        run.logging = True
        if run.start.checkpoint["progress"]["epoch"]:
            run.saved = history[-1]["epoch"]

    def lock() -> None:  # on rank 0; a refusal (folder in use, or holding a run) ends every process
        folder.open(fresh=run.fresh, overwrite=run.config.run.overwrite)

    on_main(lock)
    with folder:
        try:
            return _prepare_and_fit(run, folder, history, observer)
        except KeyboardInterrupt as interrupt:
            raise _interrupted(run, folder, interrupt) from None
        finally:
            observer.close()


def _prepare_and_fit(run: RunPlan, folder: RunFolder, history: list[dict], observer: Observer) -> RunResult:
    prepared = prepare(run.config, start=run.start, observer=observer, checked=True)
    progress = prepared.progress
    # Epoch numbers run on across phases; a resumed phase continues its own numbering.
    offset = len(history) - progress.epoch
    result = RunResult(folder.path, run.start.phase, prepared.config.run.monitor, progress, history,
                       count_parameters(prepared.built.model).to_dict(), notes=[*run.notes, *prepared.notes],
                       head_fit=prepared.head_fit.to_dict() if prepared.head_fit else None)
    _begin(run, prepared, folder, result, observer)

    def checkpoint() -> dict[str, Any]:
        lineage = {"phase": run.start.phase, "parent": run.parent, "start": result.start, "head_fit": result.head_fit,
                   "run": checkpoint_run(folder.path)}
        return training_checkpoint(prepared, progress=progress, history=history, lineage=lineage)

    def save(progress: Progress, history: list[dict], is_best: bool) -> None:  # the same objects fit updates
        with deferred():  # a signal waits until last.pt, history.csv, log.txt and run.saved agree
            if is_main_process():
                atomic_save(checkpoint(), folder.last, *([folder.best] if is_best else []))
                folder.write_epoch(history, is_best=is_best)
            run.saved = history[-1]["epoch"]
        more = progress.epoch < prepared.config.run.epochs and not progress.stopped_early
        # Under torchrun the processes stop together: any one asked (SIGUSR1) stops them all.
        if more and reduce_sums(torch.tensor([float(stop_asked())])).item():
            raise Terminated(STOP_AFTER_EPOCH)

    if run.start.phase > 1 and not run.start.resume and prepared.trainer.val_loader is not None:
        _start_from_parent(result, progress, folder, checkpoint, prepared.trainer)
    try:
        fit(prepared.trainer, epochs=prepared.config.run.epochs, progress=progress, history=history, save=save, observer=observer,
            epoch_offset=offset)
    except BaseException:
        if is_main_process():  # the curves as far as they go; a failure of theirs must not hide the run's own
            with contextlib.suppress(Exception):
                folder.end_epochs(history)
        raise
    if is_main_process():
        folder.end_epochs(history)
    _finish(run, prepared, folder, result, observer)
    return result


def _interrupted(run: RunPlan, folder: RunFolder, interrupt: KeyboardInterrupt) -> Interrupted:
    """Ctrl-C, a termination signal or a stop asked for after an epoch: what last.pt holds and
    how to go on from it, for the user and for log.txt."""
    signum = getattr(interrupt, "signum", SIGINT)
    how = stopped_by(signum)
    if signum == STOP_AFTER_EPOCH:
        message = f"stopped after epoch {run.saved}'s checkpoint, as {signal_name(signum)} asked; resume with: tlcli train --resume {folder.last}"
    elif run.saved is not None:
        message = f"{how} after epoch {run.saved}; resume with: tlcli train --resume {folder.last}"
    elif folder.holds_checkpoint():  # phase 2 saves its starting model as best.pt before its first epoch
        message = f"{how} before the first epoch ended; resume with: tlcli train --resume {folder.path}"
    else:
        message = f"{how} before the first epoch ended: there is nothing to resume; run the command again"
    if run.logging and is_main_process():
        folder.log(message)
    return Interrupted(message, signum=signum)


def _begin(run: RunPlan, prepared: Prepared, folder: RunFolder, result: RunResult, observer: Observer) -> None:
    config, data, built, parameters = prepared.config, prepared.data, prepared.built, result.parameters
    for note in result.notes:
        observer.warning(note)
    observer.info(f"phase {run.start.phase}: {prepared.method}")
    if world_size() > 1:
        observer.info(prepared.processes)
    if not is_main_process():
        return
    if run.fresh:
        folder.clear_previous_run()
    else:
        folder.adopt((run.start.checkpoint.get("run") or {}).get("id"))
    run.logging = True
    resolved, asked = prepared.resolved_config().to_dict(), run.config.to_dict()
    # Beside each resolved value, what was asked for it when that differs ("auto", or none: the default).
    requested = {section: changed for section, values in asked.items()
                 if (changed := {name: value for name, value in values.items() if resolved[section][name] != value})}
    folder.write_json("config.json", {**resolved, "requested": requested, "phase": run.start.phase, "parent": run.parent})
    folder.log(
        f"{'resume' if run.start.resume else 'start'} phase {run.start.phase}: {config.model.arch} on {data.source} "
        f"({data.num_classes} classes, {len(data.splits['train'])} train / {len(data.splits['val'])} val images), "
        f"freeze {built.freeze_policy}, {parameters['trainable']:,} of {parameters['total']:,} parameters trainable, "
        f"normalisation statistics {'kept' if prepared.keep_statistics else 'updated'}, {prepared.method}, "
        f"device {prepared.device}, amp {prepared.precision.name}, channels-last {'on' if prepared.channels_last else 'off'}, "
        f"{prepared.process}, {prepared.processes}; features {prepared.inputs.paths['features']}; images {prepared.inputs.paths['images']}"
    )
    folder.begin_epochs(title=f"{config.model.arch} on {data.source}", tensorboard=config.run.tensorboard)


def _finish(run: RunPlan, prepared: Prepared, folder: RunFolder, result: RunResult, observer: Observer) -> None:
    progress, monitor = result.progress, result.monitor
    main = is_main_process()
    if progress.stopped_early and main:
        folder.log(f"stopped early: no improvement in {monitor} for {prepared.config.run.patience} epochs")
    if run.start.phase > 1 and progress.best_epoch == 0 and result.start is not None:
        kept = (f"no phase-{run.start.phase} epoch beat phase {run.start.phase - 1}'s {monitor} ({progress.best_metric:.4f}): "
                f"best.pt holds phase {run.start.phase - 1}'s model; last.pt holds this phase's last epoch")
        result.notes.append(kept)
        observer.warning(kept)
        if main:
            folder.log(kept)
    if main:
        folder.point_latest()
        folder.finish()


def _start_from_parent(result: RunResult, progress: Progress, folder: RunFolder, checkpoint, trainer: Trainer) -> None:
    """Phase 2 measures where phase 1 left the model, and best.pt starts as that model: a later
    epoch replaces it only by beating it on the monitored value, so phase 2 never ends worse."""
    before = evaluate(trainer.eval_model, trainer.val_loader, trainer.criterion, device=trainer.device, precision=trainer.precision,
                      channels_last=trainer.channels_last)
    result.start = {"val_loss": before.loss, "val_acc": before.accuracy}
    progress.best_metric, progress.best_epoch = result.start[trainer.monitor], 0
    if not is_main_process():
        return
    atomic_save(checkpoint(), folder.best)
    folder.log(f"phase {trainer.phase} starts from phase {trainer.phase - 1}'s model: val loss {before.loss:.4f} acc {before.accuracy:.4f}; "
               "best.pt holds it until an epoch beats it")
