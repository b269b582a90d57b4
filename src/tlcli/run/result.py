"""What a run returns: its folder, its epochs and best, and what phase 2 chose."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlcli.engine.state import Progress


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
