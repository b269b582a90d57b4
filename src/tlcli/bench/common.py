"""What every benchmark shares: its settings, a row of the report, and running a step in a fresh
Python process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tlcli.core.errors import TlcliError


@dataclass(frozen=True)
class BenchSettings:
    arch: str = "efficientnet_b0"
    images: int = 512  # JPEGs in the phase-1 data set (80 % train, 20 % val)
    epochs: int = 10  # phase 1
    full_images: int = 96  # images per epoch in the full fine-tune comparison
    full_epochs: int = 3
    image_width: int = 500
    image_height: int = 375
    size: int = 224  # the model's input size
    batch_size: int = 32
    steps: int = 12  # timed steps of each side after warm-up (target 4)
    repeats: int = 3  # predict and --help timings: the median of this many runs
    seed: int = 42
    # The quality target's data sets (bench/recipe.py): the digits written at quality_size, the
    # first quality_images of them (scikit-learn's 1,797 in all); both sides train at
    # quality_input, fastai's Resize and tlcli's --input-size alike, to fit 2 cores.
    quality_images: int = 900
    quality_size: int = 160
    quality_input: int = 160
    # val, test: a test split of 20 % (twice tlcli's default) measures both sides on more images.
    quality_split: tuple[float, float] = (0.2, 0.2)

    @property
    def resize(self) -> int:
        return round(self.size * 256 / 224)


@dataclass
class Row:
    target: str
    name: str
    baseline: str  # what tlcli is compared with
    baseline_value: float
    tlcli_value: float
    unit: str
    ratio: float  # how many times better tlcli is (or, for targets 3-5, the ratio the goal bounds)
    goal: str
    passed: bool
    details: dict = field(default_factory=dict)


def run_step(arguments: list[str], *, env: dict | None = None) -> tuple[float, str]:
    """(wall seconds, stdout) of a fresh Python process; a failure is a TlcliError with its last line."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *arguments], capture_output=True, text=True, env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - started
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise TlcliError(f"benchmark step '{' '.join(arguments[:3])}' failed: {last}")
    return seconds, done.stdout


def json_of(arguments: list[str], **kwargs) -> tuple[float, dict]:
    seconds, stdout = run_step(arguments, **kwargs)
    return seconds, json.loads(stdout)


def tlcli_train(data: Path, out: Path, s: BenchSettings, *extra: str) -> list[str]:
    weights = [] if "--weights" in extra else ["--weights", "none"]
    return ["-m", "tlcli", "train", "--data", str(data), "--arch", s.arch, *weights, "--input-size", str(s.size),
            "--batch-size", str(s.batch_size), "--seed", str(s.seed), "--out", str(out), "--overwrite", "--json", *extra]
