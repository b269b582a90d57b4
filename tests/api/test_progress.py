"""``tlcli.api.progress``: which observer ``make_observer`` picks (quiet, lines off a terminal,
silent on the other ranks under torchrun), the quiet one turning warnings into Python warnings,
and the log-lines observer writing one time-stamped line per epoch, and per finished piece of
work, to stderr and nothing to stdout."""

from __future__ import annotations

import math
import re
import warnings

import pytest

from tlcli.api import progress
from tlcli.api.progress import BarObserver, LineObserver, QuietObserver, make_observer
from tlcli.engine import distributed
from tlcli.engine.observer import Observer

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d "


def _row(epoch: int, val_loss: float = 0.5) -> dict:
    return {"phase": 1, "epoch": epoch, "train_loss": 0.123456, "train_acc": 0.9, "val_loss": val_loss, "val_acc": 0.875,
            "lr": 0.00123, "seconds": 1.54, "images_per_s": 321.4}


def test_no_progress_is_quiet_but_warnings_still_reach_python(capsys):
    observer = make_observer(False)

    with pytest.warns(UserWarning, match="12 images could not be read"):
        observer.warning("12 images could not be read")
    observer.epoch_end(_row(1))
    observer.info("fitting the head")

    assert isinstance(observer, QuietObserver)
    assert capsys.readouterr() == ("", "")


def test_a_quiet_warning_can_be_filtered_like_any_python_warning(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="class b has one image"):
            QuietObserver().warning("class b has one image")


def test_off_a_terminal_progress_is_plain_lines(monkeypatch):
    monkeypatch.setattr(progress.console, "is_jupyter", False)

    observer = make_observer(True)

    assert type(observer) is LineObserver  # pytest's captured stderr is no terminal


def test_under_torchrun_only_rank_zero_reports(monkeypatch):
    monkeypatch.setattr(distributed, "is_main_process", lambda: False)

    assert type(make_observer(True)) is Observer
    assert isinstance(make_observer(False), QuietObserver)  # its warnings still count on every rank


def test_the_line_observer_writes_one_stamped_line_per_epoch_to_stderr(capsys):
    observer = LineObserver()

    observer.epoch_start(1, 1, 2, 10)
    observer.batch_end(5, 0.5, 0.5, 100.0)  # nothing animated between epochs
    observer.epoch_end(_row(1))
    observer.epoch_end(_row(2, val_loss=math.nan))

    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == "" and len(lines) == 2
    assert re.fullmatch(STAMP + r"phase 1 epoch 1: train loss 0\.1235 acc 0\.9000  val loss 0\.5000 acc 0\.8750  lr 0\.00123  1\.5 s  321 img/s",
                        lines[0])
    assert re.fullmatch(STAMP + r"phase 1 epoch 2: train loss 0\.1235 acc 0\.9000  lr 0\.00123  1\.5 s  321 img/s", lines[1])  # no val split


def test_warnings_and_long_lines_are_printed_whole_without_markup(capsys):
    path = "/data/" + "x" * 300 + "/[bold]photo[/bold].png"

    LineObserver().warning(f"cannot read {path}")
    LineObserver().info("phase 1: the head is fitted by L-BFGS")

    assert capsys.readouterr().err.splitlines() == [f"Warning: cannot read {path}", "phase 1: the head is fitted by L-BFGS"]


def test_work_before_the_epochs_reports_when_done_and_every_so_often(capsys, monkeypatch):
    observer = LineObserver()
    for done in (0, 50, 100):
        observer.prepare("decoding", done, 100)
    assert re.fullmatch(STAMP + r"decoding: 100 img in [\d.]+ s \(\d+ img/s\)\n", capsys.readouterr().err)  # quick work: one line

    monkeypatch.setattr(progress, "PLAIN_PROGRESS_EVERY_S", 0.0)  # as if each step took longer than the interval
    for done in (0, 3, 8):
        observer.prepare("features", done, 8, unit="batch")
    lines = [re.sub(STAMP, "", line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 3 and lines[0].startswith("features: 0/8 batch (") and lines[1].startswith("features: 3/8 batch (")
    assert re.fullmatch(r"features: 8 batch in [\d.]+ s \(\d+ batch/s\)", lines[2])


def test_the_bar_observer_ends_each_epoch_with_the_same_line(capsys):
    observer = BarObserver()

    observer.epoch_start(2, 3, 5, 4)
    for done in range(1, 5):
        observer.batch_end(done, 0.4, 0.8, 200.0)
    observer.epoch_end(_row(3))
    observer.close()

    # Off a terminal, Rich leaves only blank lines where the bar was.
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and re.fullmatch(STAMP + r"phase 1 epoch 3: train loss 0\.1235 .*321 img/s", lines[0])
    assert observer.bar.tasks == []  # the epoch's bar removed: nothing left to redraw
