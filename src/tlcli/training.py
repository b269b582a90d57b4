"""``train`` and the sequence every run follows (train, ``finetuning.finetune``, ``resuming.resume``):
where a run starts, then prepare, fit, finish.

The three differ only in where the weights, the freeze policy, the optimiser state and the
history start from (a ``Start``); ``run_plan`` is the same short sequence for all of them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from signal import SIGINT
from typing import Any

import torch

from tlcli.checkpoint import atomic_save, load_checkpoint, training_checkpoint
from tlcli.config import TrainConfig
from tlcli.engine.distributed import is_main_process, on_main, process_group, reduce_sums, world_size
from tlcli.engine.loop import Observer, fit, validate
from tlcli.engine.state import Progress
from tlcli.errors import Interrupted, TlcliError
from tlcli.models.freeze import count_parameters
from tlcli.prepare import Prepared, Start, check_before_data, prepare
from tlcli.run_files import checkpoint_run
from tlcli.runs import RunFolder, checkpoints_root, default_run_name
from tlcli.wiseft import mix_into_best
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
    trial: dict[str, Any] | None = None  # phase 2's trial of backbone learning rates
    wise_ft: dict[str, Any] | None = None  # phase 2's mix of phase 1's and its own best weights, chosen on val
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
            "trial": self.trial,
            "wise_ft": self.wise_ft,
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
    recorded = run.start.checkpoint if run.start.resume else {}  # a resumed phase 2 keeps its start and its trial
    result = RunResult(folder.path, run.start.phase, prepared.config.run.monitor, progress, history,
                       count_parameters(prepared.built.model).to_dict(), start=recorded.get("start"), notes=[*run.notes, *prepared.notes],
                       head_fit=prepared.head_fit.to_dict() if prepared.head_fit else None,
                       trial=prepared.trial.to_dict() if prepared.trial else recorded.get("trial"))
    _begin(run, prepared, folder, result, observer)

    def checkpoint() -> dict[str, Any]:
        lineage = {"phase": run.start.phase, "parent": run.parent, "start": result.start, "head_fit": result.head_fit,
                   "trial": result.trial, "run": checkpoint_run(folder.path)}
        return training_checkpoint(prepared, progress=progress, history=history, lineage=lineage)

    def save(progress: Progress, history: list[dict], is_best: bool) -> None:  # the same objects fit updates
        with deferred():  # a signal waits until last.pt, history.csv, log.txt and run.saved agree
            if is_main_process():
                saved = checkpoint()
                if is_best and progress.best_is_average:  # best.pt first, as atomic_save orders them
                    # The trained weights ride along: a kill before last.pt resumes from best.pt (prepare._model).
                    atomic_save({**saved, "state_dict": saved["average"]["weights"], "trained_state_dict": saved["state_dict"],
                                 "weights_of": "moving average"}, folder.best)
                atomic_save(saved, folder.last, *([folder.best] if is_best and not progress.best_is_average else []))
                folder.write_epoch(history, is_best=is_best)
            run.saved = history[-1]["epoch"]
        more = progress.epoch < prepared.config.run.epochs and not progress.stopped_early
        # Under torchrun the processes stop together: any one asked (SIGUSR1) stops them all.
        if more and reduce_sums(torch.tensor([float(stop_asked())])).item():
            raise Terminated(STOP_AFTER_EPOCH)

    if run.start.phase > 1 and not run.start.resume and prepared.trainer.val_loader is not None:
        _start_from_parent(result, progress, folder, checkpoint, prepared)
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
    if prepared.config.optim.wise_ft and run.start.phase > 1 and prepared.trainer.val_loader is not None:
        result.wise_ft = mix_with_parent(run, prepared, folder, result, observer)
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
    if prepared.trial is not None:
        observer.info(prepared.trial.describe())
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
    if prepared.trial is not None:
        folder.log(prepared.trial.describe())
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


def _start_from_parent(result: RunResult, progress: Progress, folder: RunFolder, checkpoint, prepared: Prepared) -> None:
    """Phase 2 measures where phase 1 left the model (the trial did, when it ran), and best.pt
    starts as that model: a later epoch replaces it only by beating it on the monitored value."""
    trainer = prepared.trainer
    if prepared.trial is not None:
        result.start = dict(prepared.trial.start)
    else:
        before = validate(trainer)
        result.start = {"val_loss": before.loss, "val_acc": before.accuracy}
    progress.best_metric, progress.best_epoch = result.start[trainer.monitor], 0
    if not is_main_process():
        return
    atomic_save(checkpoint(), folder.best)
    folder.log(f"phase {trainer.phase} starts from phase {trainer.phase - 1}'s model: val loss {result.start['val_loss']:.4f} "
               f"acc {result.start['val_acc']:.4f}; "
               "best.pt holds it until an epoch beats it")


def mix_with_parent(run: RunPlan, prepared: Prepared, folder: RunFolder, result: RunResult, observer: Observer) -> dict[str, Any] | None:
    """WiSE-FT after phase 2's epochs, when an epoch beat phase 1: best.pt becomes the mix of
    phase 1's and its weights that validates best, phase 1's own included (``tlcli.wiseft``)."""
    if result.progress.best_epoch == 0:
        return None
    if run.start.resume:  # phase 1's weights come from the checkpoint phase 2 started from, if it can still be read
        try:
            weights = load_checkpoint(Path(run.parent or ""))["state_dict"]
        except TlcliError as exc:
            note = f"WiSE-FT skipped ({exc}); best.pt holds phase 2's best epoch"
            result.notes.append(note)
            observer.warning(note)
            return None
    else:
        weights = run.start.checkpoint["state_dict"]
    reduce_sums(torch.zeros(1))  # under torchrun: rank 0 has written best.pt before anyone reads it
    known = {0.0: result.start} if result.start else None
    choice = mix_into_best(folder.best, weights, prepared.trainer, prepared.built.model, known=known, write=is_main_process())
    if choice is None:
        return None
    result.progress.best_metric = choice.scores[choice.alpha][result.monitor]  # what best.pt now scores
    observer.info(choice.describe(result.monitor))
    if is_main_process():
        folder.log(choice.describe(result.monitor))
    return choice.to_dict()
