"""Runs survive kills and full disks: a kill at any point of a save is repaired by resume from the
checkpoints, nothing is left behind but a run's own files, and a full disk is one clear error."""

from __future__ import annotations

import csv
import errno
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

import tlcli
from tlcli.run.checkpoint import load_checkpoint
from tlcli.core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from tlcli.run.marker import MARKER
from tlcli.run.record import EPOCH_LINE
from tlcli.run.resume import resume
from tests.helpers import train

from tests.helpers import tiny_run_options
from tests.forked_cli import forked_tlcli

pytestmark = pytest.mark.usefixtures("isolated")

KILL_HOOK = Path(__file__).parents[1] / "kill_hook"
# What a finished run leaves in its folder: no temporary file, no .lock.
RUN_FILES = ("best.pt", "last.pt", "history.csv", "curves.png", "log.txt", "config.json", MARKER)


def _options(data: Path, out: Path, epochs: int = 2) -> list[str]:
    return tiny_run_options(data, out, epochs)


def _config(data: Path, out: Path, *, epochs: int, overwrite: bool = False) -> TrainConfig:
    return TrainConfig(data=DataConfig(str(data), val_split=0.34, test_split=0.0), model=ModelConfig(arch="mlp", weights="none", input_size=8),
                       run=RunConfig(epochs=epochs, out=str(out), workers=0, deterministic=True, overwrite=overwrite))


@pytest.fixture(scope="module")
def killable_tlcli(tmp_path_factory):
    """tlcli forked from a server that imported torch once, with tests/kill_hook's calls in place."""
    path = os.pathsep.join([str(KILL_HOOK), str(Path(tlcli.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])
    with forked_tlcli(tmp_path_factory.mktemp("killable"), env={**os.environ, "PYTHONPATH": path, "TLCLI_KILL_HOOK": "lazy"}) as command:
        yield command


def _train_killed_at(command: list[str], call: int, options: list[str], folder: Path, calls_log: Path) -> subprocess.CompletedProcess:
    """``tlcli train OPTIONS`` in a fresh process (forked by ``command``'s server) that SIGKILLs
    itself just before its ``call``-th os.replace, os.link or os.fsync under ``folder`` (0: never);
    those calls are listed in ``calls_log``. ``folder`` is its checkpoints folder too, so that
    pointing `latest` at the run is among them."""
    env = {**os.environ, "TLCLI_KILL_DIR": str(folder), "TLCLI_KILL_AT": str(call), "TLCLI_KILL_LOG": str(calls_log),
           "TLCLI_CHECKPOINTS_DIR": str(folder)}
    return subprocess.run([*command, "train", *options], env=env, capture_output=True, text=True, timeout=300)


def _assert_best_not_behind(run: Path, where: str) -> bool:
    """Straight after a kill, before any repair: evaluate, predict and finetune read best.pt as
    it is, so it must never hold an older model than the best epoch last.pt records. Returns
    whether best.pt is ahead of last.pt."""
    last, best = load_checkpoint(run / "last.pt")["progress"], load_checkpoint(run / "best.pt")["progress"]
    assert best["epoch"] >= last["best_epoch"], where
    return best["epoch"] > last["epoch"]


def _assert_whole(run: Path, reference: dict, where: str) -> None:
    """The run as an uninterrupted one leaves it: best.pt the model of the best epoch last.pt
    records, history.csv and log.txt with every epoch once, and nothing else in its folder."""
    last, best = load_checkpoint(run / "last.pt"), load_checkpoint(run / "best.pt")
    assert last["progress"]["epoch"] == 2 and best["progress"]["epoch"] == last["progress"]["best_epoch"] == 2, where
    assert all(torch.equal(best["state_dict"][key], value) for key, value in reference["state_dict"].items()), where
    with open(run / "history.csv") as stream:
        assert [int(row["epoch"]) for row in csv.DictReader(stream)] == [row["epoch"] for row in last["history"]] == [1, 2], where
    assert EPOCH_LINE.findall((run / "log.txt").read_text()) == [("1", "1"), ("1", "2")], where
    assert sorted(os.listdir(run)) == sorted(RUN_FILES), where  # no temporary file, no .lock
    assert sorted(os.listdir(run.parent)) == ["latest", "run"], where


def test_a_kill_at_any_point_of_the_last_epochs_save_is_repaired_by_resume(tiny, tmp_path, run_cli, monkeypatch, killable_tlcli):
    calls_log = tmp_path / "calls.txt"
    whole = _train_killed_at(killable_tlcli, 0, _options(tiny, tmp_path / "whole" / "run"), tmp_path / "whole", calls_log)
    assert whole.returncode == 0, whole.stderr
    reference = load_checkpoint(tmp_path / "whole" / "run" / "best.pt")
    assert reference["progress"]["epoch"] == 2  # so the last epoch's save writes best.pt as well as last.pt
    calls = calls_log.read_text().splitlines()
    saves = [number for number, call in enumerate(calls, 1) if call.startswith("fsync .last.pt.")]
    assert len(saves) == 2
    # From the last epoch's checkpoint to `latest`: best.pt, last.pt, history.csv, each fsynced.
    kill_points = range(saves[1], len(calls) + 1)
    assert len(kill_points) >= 10
    for call in kill_points:
        where = f"killed before call {call}, {calls[call - 1]}"
        folder = tmp_path / f"killed-{call}"
        killed = _train_killed_at(killable_tlcli, call, _options(tiny, folder / "run"), folder, tmp_path / "killed-calls.txt")
        assert killed.returncode == 128 + signal.SIGKILL, (where, killed.stderr)  # as the server reports it
        ahead = _assert_best_not_behind(folder / "run", where)
        monkeypatch.setenv("TLCLI_CHECKPOINTS_DIR", str(folder))
        resumed = run_cli("train", "--resume", folder / "run" / "last.pt")
        assert resumed.code == 0, (where, resumed.stderr)
        # best.pt ahead is the whole checkpoint of epoch 2: resume goes on from it, not from epoch 1.
        assert ("last.pt was one save behind best.pt" in resumed.stderr) == ahead, (where, resumed.stderr)
        _assert_whole(folder / "run", reference, where)


def test_resume_repairs_a_best_pt_that_an_older_tlcli_left_behind_last_pt(tiny, tmp_path):
    """Older versions replaced last.pt before best.pt: a kill between the two left last.pt naming
    itself the best epoch and best.pt holding an older one, for good."""
    run = tmp_path / "run"
    train(_config(tiny, run, epochs=1))
    stale = (run / "best.pt").read_bytes()
    resume(run / "last.pt", epochs=2)
    assert load_checkpoint(run / "last.pt")["progress"]["best_epoch"] == 2
    (run / "best.pt").unlink()  # a hard link to last.pt: replace it, do not write through it
    (run / "best.pt").write_bytes(stale)
    (run / ".lock").write_text("tlcli pid 4242")  # what the killed run left
    result = resume(run / "last.pt")
    assert load_checkpoint(run / "best.pt")["progress"]["epoch"] == 2
    assert any("best.pt did not hold epoch 2" in note for note in result.notes)


def test_a_finished_run_leaves_only_its_files_and_overwrite_clears_what_kills_left(tiny, tmp_path):
    run = tmp_path / "run"
    train(_config(tiny, run, epochs=1))
    assert sorted(os.listdir(run)) == sorted(RUN_FILES)  # no .lock once the run is over
    for name in (".last.pt.0badc0de.tmp", ".best.pt.4242.link", ".history.csv.1234abcd.tmp", ".config.json.5678ef01.tmp"):
        (run / name).write_bytes(bytes(1000))  # as kills in the middle of writes leave them
    (run / ".lock").write_text("tlcli pid 4242")
    train(_config(tiny, run, epochs=1, overwrite=True))
    assert sorted(os.listdir(run)) == sorted(RUN_FILES)


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs: a real file system that fills up."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def _fill(disk: Path, *, leave: int) -> None:
    """Fill ``disk`` up, then free ``leave`` bytes."""
    with open(disk / "filler", "wb", buffering=0) as stream:
        try:
            while True:
                stream.write(bytes(1 << 16))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        stream.truncate(max(0, stream.tell() - leave))


def test_a_full_disk_is_one_error_line_and_keeps_the_previous_checkpoint(tiny, small_disk, run_cli):
    run = small_disk / "run"
    assert run_cli("train", *_options(tiny, run, epochs=1)).code == 0
    before = (run / "last.pt").read_bytes()
    assert len(before) > 200_000
    _fill(small_disk, leave=128 * 1024)  # room for the small files, not for a checkpoint
    failed = run_cli("train", "--resume", run / "last.pt", "--epochs", "2")
    assert failed.code == 1
    errors = [line for line in failed.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: no space left on device while writing {run / 'last.pt'}"], failed.stderr
    assert (run / "last.pt").read_bytes() == before
    assert load_checkpoint(run / "last.pt")["progress"]["epoch"] == 1
    assert sorted(os.listdir(run)) == sorted(RUN_FILES)
