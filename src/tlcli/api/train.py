"""The verbs that train: ``train`` (phase 1, or a whole run from scratch), ``finetune`` (phase 2)
and ``compare`` (several configurations on one split). The command line calls exactly these."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Mapping

from tlcli.api.options import FINETUNE_DEFAULTS, FINETUNE_TYPES, TRAIN_DEFAULTS, TRAIN_TYPES, finetune_config, only_epochs, train_config, warnings_about
from tlcli.api.progress import make_observer
from tlcli.core.config import PHASE1_OVERRIDES, TrainConfig, check_folds
from tlcli.core.errors import ConfigError


def train(data: str = TRAIN_DEFAULTS["data"], *, folds: int = 0, resume: str | Path | None = None, progress: bool = True,
          **options: Any):
    """Train a model: phase 1 of transfer learning (backbone frozen, head fitted), or a whole run from scratch.

    ``data`` is a folder, a name under data/, a built-in set (digits, mnist, cifar10 ...), a CSV
    label file, TFRecord files or ``hf:OWNER/NAME``. Every other option of ``tlcli train`` is a
    keyword argument named as the option (``arch="resnet18"``, ``epochs=20``, ``hflip=True``,
    ``hidden=(128, 64)``); the signature lists them all with their defaults.

    folds: K-fold cross-validation (one model per fold); returns a StudyResult.
    resume: "auto" resumes the run in ``out`` if it holds a checkpoint, else starts it; a run
        folder or last.pt continues that run (then only ``epochs`` may be given).
    progress: draw progress on stderr (a bar on a terminal or in a notebook, lines in a log);
        False shows nothing and turns the run's warnings into Python warnings.

    Returns a RunResult (``.run_dir``, ``.history``, ``.to_dict()``). Raises a TlcliError
    (ConfigError for a bad option, before any data is read).
    """
    given = {**({"data": data} if data != TRAIN_DEFAULTS["data"] else {}), **options}
    config = train_config(data=data, **options)
    check_folds(folds)
    observer = make_observer(progress)
    for warning in warnings_about(config):
        observer.warning(warning)
    if resume is not None and folds:
        raise ConfigError("resume continues one run; a folds study resumes by running it again with the same out")
    if resume == "auto":
        from tlcli.run.resume import train_or_resume

        return train_or_resume(config, observer=observer)
    if resume is not None:
        from tlcli.run.resume import resume as resume_run

        return resume_run(Path(resume), epochs=only_epochs(given), observer=observer)
    if folds:
        return _cross_validate(config, folds, progress)
    from tlcli.run.story import Run

    return Run(config).execute(observer)


def _cross_validate(config: TrainConfig, folds: int, progress: bool):
    from dataclasses import replace

    from tlcli.run.locate import checkpoints_root, default_run_name
    from tlcli.experiments.compare import run_study

    name = default_run_name(config.data.source, config.model.arch, f"-{folds}fold")
    out = Path(config.run.out) if config.run.out else checkpoints_root() / name
    config = replace(config, run=replace(config.run, out=None))
    return run_study([(config.model.arch, config)], out, folds=folds, observer_for=_observer_for(progress),
                     title=f"{folds}-fold cross-validation")


def _observer_for(progress: bool):
    def observer_for(label: str):
        observer = make_observer(progress)
        observer.info(f"== {label}")
        return observer

    return observer_for


def finetune(run: str | Path, *, resume: str | Path | None = None, progress: bool = True, **options: Any):
    """Phase 2: unfreeze a trained run (all of it by default) and fine-tune it at a lower learning rate.

    ``run`` is the phase-1 run: a run folder, a run name under checkpoints/, or a checkpoint.
    Its best.pt (with its trained head) is loaded, its history continued, and a new run folder
    written that records its parent. Keyword arguments are finetune's options (``unfreeze``,
    ``epochs``, ``lr``, ``backbone_lr_mult``, ``bn_train``, ``monitor``, ``out``, ``overwrite``)
    and the phase-1 settings it may change (``optimizer``, ``hflip``, ``batch_size``, ...:
    PHASE1_OVERRIDES), named as the options of ``tlcli finetune``.

    resume: "auto" resumes the phase-2 run in ``out`` if it holds a checkpoint, else starts it;
        a phase-2 run folder or its last.pt continues that run (then only ``epochs`` may be given).

    Returns a RunResult.
    """
    observer = make_observer(progress)
    if resume not in (None, "auto"):
        from tlcli.run.resume import resume as resume_run

        from tlcli.run.locate import resolve_checkpoint

        epochs = only_epochs(options)
        return resume_run(Path(resume), epochs=epochs, observer=observer, parent=resolve_checkpoint(str(run)))
    config = finetune_config(str(run), **options)
    if resume == "auto":
        from tlcli.run.resume import finetune_or_resume

        return finetune_or_resume(config, observer=observer)
    from tlcli.run.finetune import finetune as run_phase2

    return run_phase2(config, observer=observer)


def compare(runs: Mapping[str, Mapping[str, Any] | TrainConfig], *, out: str | Path | None = None, folds: int = 0,
            progress: bool = True, title: str = "", **shared: Any):
    """Train several configurations on the same data split and seed, and compare them.

    ``runs`` maps a name to that run's train options (``{"cnn": {"arch": "simple_cnn"},
    "b0": {"arch": "efficientnet_b0"}}``) or to a TrainConfig; ``shared`` train options apply to
    every run, a run's own win. Writes comparison.csv/json and six figures to ``out`` (reuse it to
    finish an interrupted study) and returns a StudyResult whose ``table`` has one row per run.
    """
    from datetime import datetime

    from tlcli.run.locate import checkpoints_root
    from tlcli.experiments.compare import run_study

    check_folds(folds)
    if not runs:
        raise ConfigError("nothing to compare: give at least one run")
    odd = next((name for name, options in runs.items() if not isinstance(options, (Mapping, TrainConfig))), None)
    if odd is not None:
        raise ConfigError(f"run {odd!r} takes a mapping of train options (or a TrainConfig), got {type(runs[odd]).__name__}")
    refused = {"out", "overwrite"} & {name for options in [shared, *(r for r in runs.values() if not isinstance(r, TrainConfig))] for name in options}
    if refused:
        raise ConfigError(f"{', '.join(sorted(refused))} cannot be set per run: the study decides where runs go")
    configs = [(name, train_config(options, **shared) if isinstance(options, TrainConfig) else train_config(**{**shared, **options}))
               for name, options in runs.items()]
    observer = make_observer(progress)
    for warning in dict.fromkeys(warning for _, config in configs for warning in warnings_about(config)):
        observer.warning(warning)
    study_dir = Path(out) if out else checkpoints_root() / f"study-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    return run_study(configs, study_dir, folds=folds, observer_for=_observer_for(progress), title=title)


def _keyword(name: str, default: Any, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _optional(annotation: str) -> str:
    return annotation if annotation.endswith("| None") else f"{annotation} | None"


def _show_options(function, options: list[inspect.Parameter]) -> None:
    """List ``options`` in ``function``'s signature, in place of its ``**options``, so that help()
    and editors show every option with its default."""
    signature = inspect.signature(function)
    kept = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    positional = [p for p in kept if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    function.__signature__ = signature.replace(parameters=[*positional, *options, *(p for p in kept if p not in positional)])


_show_options(train, [_keyword(name, default, TRAIN_TYPES[name]) for name, default in TRAIN_DEFAULTS.items() if name != "data"])
_show_options(finetune, [*(_keyword(name, default, FINETUNE_TYPES[name]) for name, default in FINETUNE_DEFAULTS.items()),
                         *(_keyword(name, None, _optional(TRAIN_TYPES[name])) for name in PHASE1_OVERRIDES)])
