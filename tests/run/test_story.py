"""``run.story.Run``: the path from the command line to the optimiser, as short as the reading order says."""

from __future__ import annotations

import traceback
from pathlib import Path

import torch

import tlcli

from tests.helpers import tiny_run_options
from tlcli.cli import main


def test_six_tlcli_frames_lead_from_the_command_line_to_the_optimiser_step(tiny, tmp_path, monkeypatch):
    """cli.main -> cli train -> api.train -> Run.execute -> Run.fit -> train_one_epoch: no wrapper between them."""
    package, stacks = str(Path(tlcli.__file__).parent), []
    step = torch.optim.Adam.step

    def spy(optimizer, *args, **kwargs):
        stacks.append([frame for frame in traceback.extract_stack()[:-1] if frame.filename.startswith(package)])
        return step(optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    assert main(["train", *tiny_run_options(tiny, tmp_path / "run", epochs=1), "--optimizer", "adam"]) == 0
    frames = [(Path(frame.filename).relative_to(package).as_posix(), frame.name) for frame in stacks[0]]
    assert frames == [("cli/__init__.py", "main"), ("cli/train.py", "train"), ("api/train.py", "train"),
                      ("run/story.py", "execute"), ("run/story.py", "fit"), ("engine/loop.py", "train_one_epoch")]
