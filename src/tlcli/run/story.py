"""One training run, start to end, in the order it happens: ``Run.execute`` checks the options,
takes the run folder, builds the run (``build.prepare``), begins, fits epoch by epoch saving
each, and finishes; an interrupt at any point becomes ``interrupted``'s account of what last.pt
holds. Train, finetune (``finetune.py``) and resume (``resume.py``) are all a ``Run``: they
differ only in where the weights, freeze policy, optimiser state and history start (``Start``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from signal import SIGINT
from typing import Any

import torch

from tlcli.core.config import TrainConfig
from tlcli.core.errors import Interrupted, TlcliError
from tlcli.core.stopping import STOP_AFTER_EPOCH, Terminated, deferred, signal_name, stop_asked, stopped_by
from tlcli.engine.distributed import is_main_process, on_main, process_group, reduce_sums, world_size
from tlcli.engine.loop import end_epoch, start_epoch, train_one_epoch, validate
from tlcli.engine.observer import Observer
from tlcli.engine.state import Progress, Trainer
from tlcli.models.freeze import count_parameters
from tlcli.run.build import Prepared, Start, check_before_data, prepare
from tlcli.run.checkpoint import atomic_save, load_checkpoint, training_checkpoint
from tlcli.run.folder import RunFolder
from tlcli.run.locate import checkpoints_root, default_run_name, point_latest
from tlcli.run.marker import checkpoint_run
from tlcli.run.result import RunResult
from tlcli.run.wiseft import mix_into_best


@dataclass
class Run:
    """A run's place and lineage (its folder, whether it starts one, the epochs before it), and
    what it has done so far."""

    config: TrainConfig
    run_dir: Path | None = None  # None: checkpoints/<data>-<arch>-<time>
    fresh: bool = True  # a new run (else one going on in its folder)
    start: Start = field(default_factory=Start)
    parent: str | None = None
    history: list[dict] = field(default_factory=list)  # earlier phases' epochs, then this run's
    notes: list[str] = field(default_factory=list)  # what resuming repaired
    saved: int | None = None  # the epoch (history numbering) that last.pt holds, once this run has one
    logging: bool = False  # log.txt is this run's: the run has begun, or continues its folder
    # What the run holds once it goes: set by execute, then build.
    observer: Observer = field(init=False, repr=False)
    folder: RunFolder = field(init=False, repr=False)
    prepared: Prepared = field(init=False, repr=False)
    trainer: Trainer = field(init=False, repr=False)
    progress: Progress = field(init=False, repr=False)
    result: RunResult = field(init=False, repr=False)

    def execute(self, observer: Observer | None = None) -> RunResult:
        """Check, take the run folder, then build, begin, fit, finish: a bad value, a locked folder
        or a finished one is refused before any image is read."""
        self.observer = observer or Observer()
        with process_group(self.config.run.device):
            check_before_data(self.config, self.start)
            # Rank 0's name for the folder: the others may read the clock a second later.
            self.run_dir = self.run_dir or on_main(lambda: Path(self.config.run.out) if self.config.run.out else
                                                   checkpoints_root() / default_run_name(self.config.data.source, self.config.model.arch))
            self.folder = RunFolder(self.run_dir)
            if self.start.resume:
                self.logging = True
                self.saved = self.history[-1]["epoch"] if self.start.checkpoint["progress"]["epoch"] else None
            on_main(self._take_folder)  # a refusal (folder in use, or holding a run) ends every process
            with self.folder:
                try:
                    self.build()
                    self.begin()
                    self.fit()
                    self.finish()
                    return self.result
                except KeyboardInterrupt as interrupt:
                    raise self.interrupted(interrupt) from None
                finally:
                    self.observer.close()

    def _take_folder(self) -> None:
        self.folder.open(fresh=self.fresh, overwrite=self.config.run.overwrite)

    def build(self) -> None:
        """The data, model, inputs and optimiser (``build.prepare``), and the result they start."""
        self.prepared = prepare(self.config, start=self.start, observer=self.observer, checked=True)
        prepared, recorded = self.prepared, self.start.checkpoint if self.start.resume else {}  # a resumed phase 2 keeps its start and trial
        self.trainer, self.progress = prepared.trainer, prepared.progress
        self.result = RunResult(self.folder.path, self.start.phase, prepared.config.run.monitor, self.progress, self.history,
                                count_parameters(prepared.built.model).to_dict(), start=recorded.get("start"),
                                notes=[*self.notes, *prepared.notes], head_fit=prepared.head_fit.to_dict() if prepared.head_fit else None,
                                trial=prepared.trial.to_dict() if prepared.trial else recorded.get("trial"))

    def begin(self) -> None:
        """Say what trains how; on rank 0 clear or adopt the folder, write config.json and the
        first log line; phase 2 measures where phase 1 left the model."""
        prepared, observer = self.prepared, self.observer
        for note in self.result.notes:
            observer.warning(note)
        observer.info(f"phase {self.start.phase}: {prepared.method}")
        if prepared.trial is not None:
            observer.info(prepared.trial.describe())
        if world_size() > 1:
            observer.info(prepared.processes)
        if is_main_process():
            self._begin_folder()
        if self.start.phase > 1 and not self.start.resume and self.trainer.val_loader is not None:
            self._start_from_parent()

    def _begin_folder(self) -> None:
        prepared, record, config = self.prepared, self.folder.record, self.config
        if self.fresh:
            self.folder.clear_previous_run()
        else:
            self.folder.adopt((self.start.checkpoint.get("run") or {}).get("id"))
        self.logging = True
        resolved, asked = prepared.resolved_config().to_dict(), config.to_dict()
        # Beside each resolved value, what was asked for it when that differs ("auto", or none: the default).
        requested = {section: changed for section, values in asked.items()
                     if (changed := {name: value for name, value in values.items() if resolved[section][name] != value})}
        self.folder.write_json("config.json", {**resolved, "requested": requested, "phase": self.start.phase, "parent": self.parent})
        record.log(describe_start(prepared, self.result.parameters, resumed=self.start.resume, phase=self.start.phase))
        if prepared.trial is not None:
            record.log(prepared.trial.describe())
        record.begin(title=f"{config.model.arch} on {prepared.data.source}", tensorboard=config.run.tensorboard)

    def _start_from_parent(self) -> None:
        """Phase 2 measures where phase 1 left the model (the trial did, when it ran), and best.pt
        starts as that model: a later epoch replaces it only by beating it on the monitored value."""
        trainer, result = self.trainer, self.result
        if self.prepared.trial is not None:
            result.start = dict(self.prepared.trial.start)
        else:
            before = validate(trainer)
            result.start = {"val_loss": before.loss, "val_acc": before.accuracy}
        self.progress.best_metric, self.progress.best_epoch = result.start[trainer.monitor], 0
        if is_main_process():
            atomic_save(self.checkpoint(), self.folder.best)
            self.folder.record.log(f"phase {trainer.phase} starts from phase {trainer.phase - 1}'s model: val loss "
                                   f"{result.start['val_loss']:.4f} acc {result.start['val_acc']:.4f}; best.pt holds it until an epoch beats it")

    def fit(self) -> None:
        """Epoch by epoch until the phase's epochs or early stopping, each one saved; phase 2 then
        mixes its best weights with phase 1's (WiSE-FT). Epochs are numbered across phases."""
        t, progress, observer, epochs = self.trainer, self.progress, self.observer, self.prepared.config.run.epochs
        offset = len(self.history) - progress.epoch  # earlier phases' epochs
        try:
            while progress.epoch < epochs and not progress.stopped_early:
                epoch = progress.epoch + 1
                start_epoch(t, epoch)
                observer.epoch_start(t.phase, offset + epoch, offset + epochs, len(t.train_loader))
                lr = t.optimizer.param_groups[0]["lr"]
                trained = t.full_batch_epoch() if t.full_batch_epoch is not None else train_one_epoch(t, observer=observer)
                row, is_best = end_epoch(t, progress, trained, epoch=offset + epoch, lr=lr, observer=observer)
                self.history.append(row)
                self.save(is_best)
                observer.epoch_end(row)
        except BaseException:
            if is_main_process():  # the curves as far as they go; a failure of theirs must not hide the run's own
                with contextlib.suppress(Exception):
                    self.folder.record.end(self.history)
            raise
        if is_main_process():
            self.folder.record.end(self.history)
        if self.prepared.config.optim.wise_ft and self.start.phase > 1 and t.val_loader is not None:
            self.result.wise_ft = self.mix_with_parent()

    def checkpoint(self) -> dict[str, Any]:
        lineage = {"phase": self.start.phase, "parent": self.parent, "start": self.result.start, "head_fit": self.result.head_fit,
                   "trial": self.result.trial, "run": checkpoint_run(self.folder.path)}
        return training_checkpoint(self.prepared, progress=self.progress, history=self.history, lineage=lineage)

    def save(self, is_best: bool) -> None:
        """last.pt (and best.pt), history.csv and log.txt for the epoch just ended, as one: a
        signal waits until they and ``saved`` agree. Then a stop asked for (SIGUSR1) ends the run."""
        progress, folder = self.progress, self.folder
        with deferred():
            if is_main_process():
                saved = self.checkpoint()
                if is_best and progress.best_is_average:  # best.pt first, as atomic_save orders them
                    # The trained weights ride along: a kill before last.pt resumes from best.pt (build._model).
                    atomic_save({**saved, "state_dict": saved["average"]["weights"], "trained_state_dict": saved["state_dict"],
                                 "weights_of": "moving average"}, folder.best)
                atomic_save(saved, folder.last, *([folder.best] if is_best and not progress.best_is_average else []))
                folder.record.write_epoch(self.history, is_best=is_best)
            self.saved = self.history[-1]["epoch"]
        more = progress.epoch < self.prepared.config.run.epochs and not progress.stopped_early
        # Under torchrun the processes stop together: any one asked stops them all.
        if more and reduce_sums(torch.tensor([float(stop_asked())])).item():
            raise Terminated(STOP_AFTER_EPOCH)

    def mix_with_parent(self) -> dict[str, Any] | None:
        """WiSE-FT after phase 2's epochs, when an epoch beat phase 1: best.pt becomes the mix of
        phase 1's and its weights that validates best, phase 1's own included (``wiseft``)."""
        result = self.result
        if result.progress.best_epoch == 0:
            return None
        if self.start.resume:  # phase 1's weights come from the checkpoint phase 2 started from, if it can still be read
            try:
                weights = load_checkpoint(Path(self.parent or ""))["state_dict"]
            except TlcliError as exc:
                self._note(f"WiSE-FT skipped ({exc}); best.pt holds phase 2's best epoch", log=False)
                return None
        else:
            weights = self.start.checkpoint["state_dict"]
        reduce_sums(torch.zeros(1))  # under torchrun: rank 0 has written best.pt before anyone reads it
        known = {0.0: result.start} if result.start else None
        choice = mix_into_best(self.folder.best, weights, self.trainer, self.prepared.built.model, known=known, write=is_main_process())
        if choice is None:
            return None
        result.progress.best_metric = choice.scores[choice.alpha][result.monitor]  # what best.pt now scores
        self.observer.info(choice.describe(result.monitor))
        if is_main_process():
            self.folder.record.log(choice.describe(result.monitor))
        return choice.to_dict()

    def finish(self) -> None:
        progress, monitor, phase = self.progress, self.result.monitor, self.start.phase
        if progress.stopped_early and is_main_process():
            self.folder.record.log(f"stopped early: no improvement in {monitor} for {self.prepared.config.run.patience} epochs")
        if phase > 1 and progress.best_epoch == 0 and self.result.start is not None:
            self._note(f"no phase-{phase} epoch beat phase {phase - 1}'s {monitor} ({progress.best_metric:.4f}): "
                       f"best.pt holds phase {phase - 1}'s model; last.pt holds this phase's last epoch")
        if is_main_process():
            point_latest(self.folder.path)
            self.folder.finish()

    def _note(self, note: str, *, log: bool = True) -> None:
        self.result.notes.append(note)
        self.observer.warning(note)
        if log and is_main_process():
            self.folder.record.log(note)

    def interrupted(self, interrupt: KeyboardInterrupt) -> Interrupted:
        """Ctrl-C, a termination signal or a stop asked for after an epoch: what last.pt holds and
        how to go on from it, for the user and for log.txt."""
        signum, folder = getattr(interrupt, "signum", SIGINT), self.folder
        how = stopped_by(signum)
        if signum == STOP_AFTER_EPOCH:
            message = f"stopped after epoch {self.saved}'s checkpoint, as {signal_name(signum)} asked; resume with: tlcli train --resume {folder.last}"
        elif self.saved is not None:
            message = f"{how} after epoch {self.saved}; resume with: tlcli train --resume {folder.last}"
        elif folder.holds_checkpoint():  # phase 2 saves its starting model as best.pt before its first epoch
            message = f"{how} before the first epoch ended; resume with: tlcli train --resume {folder.path}"
        else:
            message = f"{how} before the first epoch ended: there is nothing to resume; run the command again"
        if self.logging and is_main_process():
            folder.record.log(message)
        return Interrupted(message, signum=signum)


def describe_start(prepared: Prepared, parameters: dict[str, int], *, resumed: bool, phase: int) -> str:
    """log.txt's first line of a run: what trains, on what, how, and where its caches are."""
    config, data, built = prepared.config, prepared.data, prepared.built
    return (f"{'resume' if resumed else 'start'} phase {phase}: {config.model.arch} on {data.source} "
            f"({data.num_classes} classes, {len(data.splits['train'])} train / {len(data.splits['val'])} val images), "
            f"freeze {built.freeze_policy}, {parameters['trainable']:,} of {parameters['total']:,} parameters trainable, "
            f"normalisation statistics {'kept' if prepared.keep_statistics else 'updated'}, {prepared.method}, "
            f"device {prepared.device}, amp {prepared.precision.name}, channels-last {'on' if prepared.channels_last else 'off'}, "
            f"{prepared.process}, {prepared.processes}; features {prepared.inputs.paths['features']}; images {prepared.inputs.paths['images']}")
