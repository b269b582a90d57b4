"""``tlcli.run.repair``: ``resumable`` falling back to best.pt where a kill during the first save
left no last.pt, and ``restore_record`` bringing history.csv and log.txt up to a checkpoint's
history, adding only the log lines missing."""

from __future__ import annotations

import csv

import pytest

from tlcli.run.record import EpochRecord, epoch_line
from tlcli.run.repair import restore_record, resumable


def _row(epoch: int, phase: int = 1) -> dict:
    return {"phase": phase, "epoch": epoch, "train_loss": 0.9 / epoch, "train_acc": 0.6, "val_loss": 1.0 / epoch, "val_acc": 0.5,
            "lr": 1e-3, "seconds": 1.0, "images_per_s": 50.0, "method": "adam"}


@pytest.fixture
def run(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    return folder


def test_a_missing_last_pt_is_stood_in_for_by_best_pt(run):
    (run / "best.pt").write_bytes(b"checkpoint")
    assert resumable(run / "last.pt") == (run / "best.pt", run / "last.pt")


def test_an_existing_last_pt_is_resumed_itself(run):
    (run / "best.pt").write_bytes(b"checkpoint")
    (run / "last.pt").write_bytes(b"checkpoint")
    assert resumable(run / "last.pt") == (run / "last.pt", None)


def test_without_either_checkpoint_the_path_is_returned_for_the_loader_to_refuse(run):
    assert resumable(run / "last.pt") == (run / "last.pt", None)


@pytest.mark.parametrize("name", ["best.pt", "epoch-3.pt"])
def test_only_last_pt_falls_back(run, name):
    (run / "best.pt").write_bytes(b"checkpoint")
    assert resumable(run / name) == (run / name, None)


def test_the_log_gets_the_epochs_it_lacks_marked_as_recovered(run):
    record = EpochRecord(run)
    record.log(epoch_line(_row(1), is_best=True))
    history = [_row(1), _row(2), _row(3)]
    added = restore_record(record, history, phase=1, best_epoch=3)
    assert added == [2, 3]
    assert record.logged_epochs() == {(1, 1), (1, 2), (1, 3)}
    lines = (run / "log.txt").read_text().splitlines()
    assert len(lines) == 3
    assert lines[1].endswith("1.0 s, recovered from the checkpoint")
    assert lines[2].endswith("1.0 s (best), recovered from the checkpoint")


def test_history_csv_is_rewritten_from_the_checkpoints_history(run):
    record = EpochRecord(run)
    record.write_history([_row(1)])
    restore_record(record, [_row(1), _row(2)], phase=1, best_epoch=1)
    with open(run / "history.csv", newline="") as stream:
        assert [row["epoch"] for row in csv.DictReader(stream)] == ["1", "2"]


def test_only_the_resumed_phases_epochs_are_added(run):
    record = EpochRecord(run)
    # Phase 1's epochs belong to another run folder's log; phase 2 resumes here.
    history = [_row(1), _row(2), _row(1, phase=2), _row(2, phase=2)]
    record.log(epoch_line(history[2], is_best=True))
    assert restore_record(record, history, phase=2, best_epoch=1) == [2]
    assert record.logged_epochs() == {(2, 1), (2, 2)}


def test_a_complete_log_is_left_as_it_was(run):
    record = EpochRecord(run)
    history = [_row(1), _row(2)]
    for row in history:
        record.log(epoch_line(row, is_best=False))
    before = (run / "log.txt").read_text()
    assert restore_record(record, history, phase=1, best_epoch=2) == []
    assert (run / "log.txt").read_text() == before
