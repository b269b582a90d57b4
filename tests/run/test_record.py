"""``tlcli.run.record``: history.csv's columns and rows, log.txt's timestamped lines, the epoch
line's wording, ``logged_epochs`` reading the epochs back from the log, and ``write_epoch`` /
``end`` keeping them (and curves.png) up to date."""

from __future__ import annotations

import csv
import re

import pytest
from PIL import Image

from tlcli.core.errors import CheckpointError
from tlcli.run.record import HISTORY_FIELDS, EpochRecord, epoch_line


def _row(epoch: int, *, phase: int = 1, **extra) -> dict:
    return {"phase": phase, "epoch": epoch, "train_loss": 1.0 / epoch, "train_acc": 0.5 + epoch / 100, "val_loss": 1.5 / epoch,
            "val_acc": 0.4 + epoch / 100, "lr": 1e-3, "seconds": 2.25, "images_per_s": 120.0, "method": "adam", **extra}


def _read_csv(path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def test_history_has_the_documented_columns_in_order(tmp_path):
    path = EpochRecord(tmp_path).write_history([_row(1)])
    assert path == tmp_path / "history.csv"
    assert path.read_text().splitlines()[0] == ",".join(HISTORY_FIELDS)
    assert HISTORY_FIELDS[:6] == ("phase", "epoch", "train_loss", "train_acc", "val_loss", "val_acc")


def test_history_rows_keep_their_values_and_leave_absent_columns_empty(tmp_path):
    rows = [_row(1), _row(2, phase=2, ema_val_loss=0.3, ema_val_acc=0.8, not_a_column="ignored")]
    table = _read_csv(EpochRecord(tmp_path).write_history(rows))
    assert [(r["phase"], r["epoch"]) for r in table] == [("1", "1"), ("2", "2")]
    assert float(table[1]["val_loss"]) == pytest.approx(0.75)
    assert table[0]["ema_val_acc"] == "" and table[1]["ema_val_acc"] == "0.8"
    assert "not_a_column" not in table[1]


def test_history_is_rewritten_whole_each_time(tmp_path):
    record = EpochRecord(tmp_path)
    record.write_history([_row(1), _row(2), _row(3)])
    record.write_history([_row(1)])
    assert len(_read_csv(tmp_path / "history.csv")) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]  # no temporary file left


def test_log_appends_timestamped_lines(tmp_path):
    record = EpochRecord(tmp_path)
    record.log("first")
    record.log("second")
    lines = (tmp_path / "log.txt").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["first", "second"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line.split(" ", 1)[0]) for line in lines)


def test_a_log_that_cannot_be_written_is_one_error(tmp_path):
    with pytest.raises(CheckpointError, match=r"cannot write .*log\.txt"):
        EpochRecord(tmp_path / "missing-folder").log("line")


def test_epoch_line_gives_the_epochs_figures():
    line = epoch_line(_row(2), is_best=False)
    assert line == "phase 1 epoch 2: train loss 0.5000 acc 0.5200, val loss 0.7500 acc 0.4200, lr 0.001, 2.2 s"
    assert epoch_line(_row(2), is_best=True).endswith(", 2.2 s (best)")


def test_epoch_line_adds_the_moving_averages_scores_when_there_are_some():
    line = epoch_line(_row(3, phase=2, ema_val_loss=0.25, ema_val_acc=0.875), is_best=False)
    assert "val loss 0.5000 acc 0.4300, moving average's val loss 0.2500 acc 0.8750, lr 0.001" in line


def test_logged_epochs_are_read_back_from_the_epoch_lines_only(tmp_path):
    record = EpochRecord(tmp_path)
    assert record.logged_epochs() == set()
    record.log("training mlp on tiny: 8 train, 4 val")
    record.log(epoch_line(_row(1), is_best=True))
    record.log(epoch_line(_row(2), is_best=False))
    record.log(epoch_line(_row(1, phase=2), is_best=False))
    record.log("a note that mentions phase 3 epoch 4 in passing")
    assert record.logged_epochs() == {(1, 1), (1, 2), (2, 1)}


def test_write_epoch_keeps_history_and_log_up_to_date_and_end_draws_the_curves(tmp_path):
    record = EpochRecord(tmp_path)
    record.begin(title="mlp on tiny", tensorboard=False)
    history = [_row(1)]
    record.write_epoch(history, is_best=True)
    history.append(_row(2))
    record.write_epoch(history, is_best=False)
    assert len(_read_csv(tmp_path / "history.csv")) == 2
    assert record.logged_epochs() == {(1, 1), (1, 2)}
    assert "(best)" in (tmp_path / "log.txt").read_text().splitlines()[0]
    # Short epochs do not redraw the curves; the end of the run does.
    assert not record.curves.exists()
    record.end(history)
    with Image.open(record.curves) as image:
        assert image.format == "PNG"
