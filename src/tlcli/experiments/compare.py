"""Studies: several training configurations on the same split and seed, tabulated side by side.

``compare`` and ``train --folds`` both run a study. Every run keeps its own run folder under
``<study>/runs/``; ``study.json`` links them, so re-running an interrupted study skips the
runs that finished and resumes the one that was cut off.
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from tlcli.run.checkpoint import load_checkpoint
from tlcli.core.config import TrainConfig, check_folds
from tlcli.engine.loop import Observer
from tlcli.core.errors import ConfigError
from tlcli.core.metrics import fit_verdict
from tlcli.evaluation.report.study_plots import plot_study
from tlcli.run.marker import refuse_foreign
from tlcli.run.folder import RunFolder

# Convergence: the first epoch whose validation accuracy reaches this share of the run's best.
CONVERGENCE_SHARE = 0.95
METRICS = ("best_val_acc", "best_val_loss", "test_acc", "f1_macro", "final_train_acc", "gap", "seconds", "seconds_per_epoch", "epochs_run")


@dataclass
class RunSummary:
    name: str
    fold: int | None
    run_dir: str
    arch: str
    trainable: int
    total: int
    epochs_run: int
    seconds: float
    seconds_per_epoch: float
    best_val_acc: float
    best_val_loss: float
    test_acc: float | None
    f1_macro: float | None
    final_train_acc: float  # at the last epoch, which is also where ``gap`` is measured
    gap: float
    verdict: str
    convergence_epoch: int | None
    history: list[dict] = field(repr=False, default_factory=list)

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "history"}


@dataclass
class StudyResult:
    out_dir: Path
    runs: list[RunSummary]  # every run (and fold)
    table: list[dict[str, Any]]  # one row per configuration; with folds, means and standard deviations
    figures: dict[str, str]
    files: dict[str, str]
    skipped: list[str]  # runs found finished and not trained again

    def __repr__(self) -> str:
        rows = "; ".join(f"{row['name']}: test acc {row['test_acc']:.4f}" if isinstance(row.get("test_acc"), float) else row["name"]
                         for row in self.table)
        return f"StudyResult('{self.out_dir}', {len(self.table)} configurations: {rows})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": str(self.out_dir),
            "table": self.table,
            "runs": [run.row() for run in self.runs],
            "figures": self.figures,
            "files": self.files,
            "skipped": self.skipped,
        }


def _finished(run_dir: Path, epochs: int) -> bool:
    last = run_dir / "last.pt"
    if not last.exists():
        return False
    progress = load_checkpoint(last)["progress"]
    return progress["epoch"] >= epochs or progress["stopped_early"]


def _summarize(name: str, fold: int | None, run_dir: Path) -> RunSummary:
    from tlcli.evaluation.evaluate import evaluate_checkpoint

    checkpoint = load_checkpoint(run_dir / "best.pt")
    phase = checkpoint["phase"]
    history = load_checkpoint(run_dir / "last.pt")["history"]
    own = [row for row in history if row["phase"] == phase]
    best_acc = max(row["val_acc"] for row in own)
    converged = next((row["epoch"] for row in own if row["val_acc"] >= CONVERGENCE_SHARE * best_acc), None)
    seconds = sum(row["seconds"] for row in own)
    test_acc = f1 = None
    if sum(checkpoint["data"]["counts"].get("test", {}).values()):
        evaluation = evaluate_checkpoint(str(run_dir / "best.pt"), split="test", mistakes=0)
        test_acc, f1 = evaluation.metrics.accuracy, evaluation.metrics.f1_macro
    parameters = checkpoint["model"]["parameters"]
    last = own[-1]
    return RunSummary(
        name=name, fold=fold, run_dir=str(run_dir), arch=checkpoint["model"]["arch"],
        trainable=parameters["trainable"], total=parameters["total"],
        epochs_run=len(own), seconds=seconds, seconds_per_epoch=seconds / len(own),
        best_val_acc=best_acc, best_val_loss=min(row["val_loss"] for row in own),
        test_acc=test_acc, f1_macro=f1,
        final_train_acc=last["train_acc"], gap=last["train_acc"] - last["val_acc"], verdict=fit_verdict(last["train_acc"], last["val_acc"]),
        convergence_epoch=converged, history=history,
    )


def _aggregate(name: str, runs: list[RunSummary]) -> dict[str, Any]:
    first = runs[0]
    row: dict[str, Any] = {"name": name, "arch": first.arch, "trainable": first.trainable, "total": first.total}
    if len(runs) == 1:
        row.update({key: getattr(first, key) for key in METRICS})
        row.update(verdict=first.verdict, convergence_epoch=first.convergence_epoch, run_dir=first.run_dir)
        return row
    row["folds"] = len(runs)
    for key in METRICS:
        values = [getattr(run, key) for run in runs if getattr(run, key) is not None]
        row[key] = statistics.fmean(values) if values else None
        row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    # The mean gap is the mean final train accuracy minus the mean final val accuracy.
    row["verdict"] = fit_verdict(row["final_train_acc"], row["final_train_acc"] - row["gap"])
    row["convergence_epoch"] = first.convergence_epoch
    return row


def run_study(
    configs: list[tuple[str, TrainConfig]],
    out_dir: Path,
    *,
    folds: int = 0,
    observer_for: Callable[[str], Observer] = lambda name: Observer(),
    title: str = "",
) -> StudyResult:
    """Train every configuration (every fold of it with ``folds``) into ``out_dir/runs``."""
    from tlcli.run.resume import resume
    from tlcli.run.story import Run

    names = [name for name, _ in configs]
    _check_run_folders(names)
    check_folds(folds)
    if folds:
        _check_enough_for_folds([config.data for _, config in configs], folds)
    if out_dir.is_dir():  # results.csv, accuracy.png, ... go into it: never among the user's files
        refuse_foreign(out_dir, kind="study", allow="study.json")
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries: list[RunSummary] = []
    skipped: list[str] = []
    with RunFolder(out_dir).open(fresh=False) as study:
        study.adopt(None, kind="study")  # marked as tlcli's, so that running the study again finds it its own
        plan = [(name, config, fold) for name, config in configs for fold in (range(folds) if folds else [None])]
        study.write_json("study.json", {
            "runs": [
                {"name": name, "fold": fold, "run_dir": str(_run_dir(out_dir, name, fold)), "config": config.to_dict()}
                for name, config, fold in plan
            ],
            "folds": folds,
        })
        for name, config, fold in plan:
            run_dir = _run_dir(out_dir, name, fold)
            label = name if fold is None else f"{name} fold {fold + 1}/{folds}"
            data = replace(config.data, folds=folds, fold=fold) if fold is not None else config.data
            config = replace(config, data=data, run=replace(config.run, out=str(run_dir), overwrite=True))
            if _finished(run_dir, config.run.epochs):
                skipped.append(label)
            elif (run_dir / "last.pt").exists():
                resume(run_dir / "last.pt", epochs=config.run.epochs, observer=observer_for(label))
            else:
                Run(config).execute(observer_for(label))
            summaries.append(_summarize(name, fold, run_dir))
        table = [_aggregate(name, [s for s in summaries if s.name == name]) for name in names]
        files = _write_tables(out_dir, table, summaries)
        figures = plot_study(summaries, table, out_dir, title=title)
    return StudyResult(out_dir, summaries, table, figures, files, skipped)


def _folder_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-=" else "_" for c in name)


def _run_dir(out_dir: Path, name: str, fold: int | None) -> Path:
    return out_dir / "runs" / _folder_name(name) / (f"fold-{fold + 1}" if fold is not None else "")


def _check_run_folders(names: list[str]) -> None:
    """A ConfigError unless every run gets a folder of its own: names the folder name makes the
    same (``mlp [h]`` and ``mlp _h_``; letters differing in case alone, for case-insensitive
    file systems) would share one, and a name of dots alone is no folder below runs/."""
    seen: dict[str, str] = {}
    for name in names:
        folder = _folder_name(name)
        if not folder.strip("."):
            raise ConfigError(f"run name '{name}' cannot name a folder; use letters or digits")
        other = seen.get(folder.casefold())
        if other == name:
            raise ConfigError(f"run name '{name}' is given twice; give each run a name of its own")
        if other is not None:
            where = "" if _folder_name(other) == folder else " on a case-insensitive file system"
            raise ConfigError(f"run names '{other}' and '{name}' would share the folder runs/{folder}{where}; give each run a name of its own")
        seen[folder.casefold()] = name


def _check_enough_for_folds(data_configs: list, folds: int) -> None:
    """Load each data set once, so a class with fewer images than folds fails before the study
    writes anything (study.json lists every fold of every run)."""
    from tlcli.data.sources import load_data

    for config in dict.fromkeys(replace(config, folds=folds, fold=0) for config in data_configs):
        load_data(config)


def _write_tables(out_dir: Path, table: list[dict], runs: list[RunSummary]) -> dict[str, str]:
    files = {}
    for name, rows in (("comparison", table), ("runs", [run.row() for run in runs])):
        path = out_dir / f"{name}.csv"
        fields = list(dict.fromkeys(key for row in rows for key in row))
        with open(path, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        files[f"{name}.csv"] = str(path)
    (out_dir / "comparison.json").write_text(json.dumps({"table": table, "runs": [r.row() for r in runs]}, indent=2, default=str) + "\n")
    files["comparison.json"] = str(out_dir / "comparison.json")
    return files
