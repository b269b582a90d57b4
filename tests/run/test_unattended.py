"""tlcli run unattended (cron, timeout, systemd, SLURM): folders it did not make are left alone,
every termination signal is reported like Ctrl-C, ``--resume auto`` is one line that always does
the right thing, and a checkpoint knows which run it belongs to."""

from __future__ import annotations

import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tlcli
from tlcli.run.marker import MARKER
from tlcli.run.folder import RunFolder

from tests.helpers import tiny_run_options

pytestmark = pytest.mark.usefixtures("isolated")


def _options(data: Path, out: Path, epochs: int = 1) -> list[str]:
    return tiny_run_options(data, out, epochs)


KILL_HOOK = Path(__file__).parents[1] / "kill_hook"


def _start(*args: str, preexec_fn=None, **env: str) -> subprocess.Popen:
    """``tlcli ARGS`` in a fresh process, as cron or a scheduler starts it; with TLCLI_KILL_*
    in ``env``, tests/kill_hook sends a signal at a chosen file operation."""
    path = os.pathsep.join([str(KILL_HOOK), str(Path(tlcli.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])
    return subprocess.Popen([sys.executable, "-m", "tlcli", *args], env={**os.environ, "PYTHONPATH": path, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)


def _wait_for_epoch_line(run: Path, epoch: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = run / "log.txt"
        if log.exists() and f"epoch {epoch}:" in log.read_text():
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError(f"no epoch {epoch} in {run} after {timeout} s")


def _history(run: Path) -> list[tuple]:
    """What an epoch computed, without its timings."""
    with open(run / "history.csv") as stream:
        return [(row["epoch"], row["train_loss"], row["train_acc"], row["val_loss"], row["val_acc"], row["lr"]) for row in csv.DictReader(stream)]


# --- Never delete what tlcli did not write -------------------------------------------------------

def _users_folder(path: Path) -> dict[str, bytes]:
    """A folder of the user's, holding files with the names a run writes."""
    files = {"config.json": b'{"mine": 1}', "log.txt": b"my notes", "best.pt": b"not a checkpoint", "tensorboard/notes.txt": b"mine"}
    for name, content in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(content)
    return files


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_a_folder_tlcli_did_not_make_is_refused_and_left_whole(run_cli, tiny, tmp_path, overwrite):
    mine = tmp_path / "mine"
    files = _users_folder(mine)
    result = run_cli("train", *_options(tiny, mine), *overwrite)
    assert result.code == 1 and "is not a tlcli run folder and is not empty" in result.stderr, result.stderr
    assert {name: (mine / name).read_bytes() for name in files} == files
    assert sorted(p.name for p in mine.iterdir()) == ["best.pt", "config.json", "log.txt", "tensorboard"]
    # The same through a --config file's out = ...
    (tmp_path / "run.toml").write_text(f'out = "{mine}"\n')
    through_config = run_cli("train", *_options(tiny, tmp_path / "unused")[:-2], "--config", tmp_path / "run.toml", *overwrite)
    assert through_config.code == 1 and "not a tlcli run folder" in through_config.stderr
    assert {name: (mine / name).read_bytes() for name in files} == files


def test_a_study_folder_does_not_take_a_run(run_cli, tiny, tmp_path):
    study = tmp_path / "study"
    assert run_cli("compare", "--base", f"{' '.join(_options(tiny, study)[:-2])}", "--run", "a: --hidden 8", "--out", study).code == 0
    table = (study / "comparison.csv").read_bytes()
    result = run_cli("train", *_options(tiny, study), "--overwrite")
    assert result.code == 1 and "is a tlcli study folder and is not empty" in result.stderr, result.stderr
    assert (study / "comparison.csv").read_bytes() == table


def test_an_empty_folder_of_the_users_takes_a_run(run_cli, tiny, tmp_path):
    (tmp_path / "empty").mkdir()
    assert run_cli("train", *_options(tiny, tmp_path / "empty")).code == 0
    assert (tmp_path / "empty" / "last.pt").is_file() and (tmp_path / "empty" / MARKER).is_file()


def test_overwrite_removes_only_tlcli_files(run_cli, tiny, tmp_path):
    run = tmp_path / "run"
    assert run_cli("train", *_options(tiny, run), "--tensorboard").code == 0
    assert run_cli("evaluate", run, "--split", "val").code == 0
    (run / "notes.txt").write_text("mine")
    (run / "tensorboard" / "notes.txt").write_text("mine too")
    (run / "eval-val" / "notes.txt").write_text("and mine")
    old_id = RunFolder(run).run_id
    assert run_cli("train", *_options(tiny, run), "--overwrite").code == 0
    assert (run / "notes.txt").read_text() == "mine" and (run / "tensorboard" / "notes.txt").read_text() == "mine too"
    assert sorted(p.name for p in (run / "eval-val").iterdir()) == ["notes.txt"]  # the old run's metrics went, the user's file stayed
    assert RunFolder(run).run_id not in (None, old_id)


def test_a_run_killed_before_its_first_checkpoint_starts_again_with_the_same_line(run_cli, tiny, tmp_path):
    run = tmp_path / "run"
    process = _start("train", *_options(tiny, run, epochs=3))
    while not (run / "config.json").exists():  # begun: marker, config.json and log.txt written, no epoch yet
        assert process.poll() is None
        time.sleep(0.01)
    process.kill()
    process.wait()
    assert not (run / "last.pt").exists() and not (run / "best.pt").exists()
    again = run_cli("train", *_options(tiny, run, epochs=1))
    assert again.code == 0, again.stderr
    assert (run / "last.pt").is_file()


# --- Every termination signal like Ctrl-C ---------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_termination_signal_says_what_last_pt_holds_logs_it_and_releases_the_lock(tiny, tmp_path, signum):
    run = tmp_path / "run"
    process = _start("train", *_options(tiny, run, epochs=100_000))
    _wait_for_epoch_line(run, 1, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr
    last_line = stderr.strip().splitlines()[-1]
    name = signal.Signals(signum).name
    assert last_line.startswith(f"Error: stopped by {name} after epoch ") and f"tlcli train --resume {run / 'last.pt'}" in last_line
    assert last_line.removeprefix("Error: ") in (run / "log.txt").read_text()
    assert not (run / ".lock").exists()
    epoch = int(last_line.split("after epoch ")[1].split(";")[0])
    assert [int(row[0]) for row in _history(run)][-1] == epoch


def test_a_signal_the_parent_ignores_stays_ignored(tiny, tmp_path):
    """Under nohup SIGHUP is ignored, and must stay so: the run goes on when the terminal closes."""
    run = tmp_path / "run"
    process = _start("train", *_options(tiny, run, epochs=100_000), preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    _wait_for_epoch_line(run, 1, process)
    process.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143


def test_sigterm_during_the_last_epochs_save_is_finished_by_resume_auto(tiny, tmp_path, run_cli):
    """The signal waits for the save: last.pt, history.csv, log.txt and the message agree on the
    epoch, and the next --resume auto finishes the run (curves, latest) instead of calling it done."""
    calls = tmp_path / "calls.txt"
    whole = _start("train", *_options(tiny, tmp_path / "whole", epochs=2), TLCLI_KILL_DIR=str(tmp_path / "whole"), TLCLI_KILL_LOG=str(calls))
    assert whole.wait(timeout=120) == 0, whole.communicate()
    last_save = max(i for i, call in enumerate(calls.read_text().splitlines(), 1) if call.startswith("replace .last.pt."))
    run = tmp_path / "run"
    process = _start("train", *_options(tiny, run, epochs=2), "--resume", "auto", TLCLI_KILL_DIR=str(run), TLCLI_KILL_AT=str(last_save),
                     TLCLI_KILL_SIGNAL="SIGTERM", TLCLI_KILL_LOG=str(tmp_path / "killed-calls.txt"))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert f"Error: stopped by SIGTERM after epoch 2; resume with: tlcli train --resume {run / 'last.pt'}" in stderr
    assert [int(row[0]) for row in _history(run)] == [1, 2]
    again = run_cli("train", *_options(tiny, run, epochs=2), "--resume", "auto")
    assert again.code == 0 and "--resume auto: finished" in again.stderr, again.stderr
    assert os.path.realpath(Path(os.environ["TLCLI_CHECKPOINTS_DIR"]) / "latest") == str(run.resolve())
    done = run_cli("train", *_options(tiny, run, epochs=2), "--resume", "auto")
    assert done.code == 0 and "--resume auto: already finished" in done.stderr


def test_sigusr1_stops_after_the_current_epochs_checkpoint(tiny, tmp_path):
    run = tmp_path / "run"
    process = _start("train", *_options(tiny, run, epochs=100_000))
    _wait_for_epoch_line(run, 2, process)
    process.send_signal(signal.SIGUSR1)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGUSR1, stderr
    last_line = stderr.strip().splitlines()[-1]
    assert "checkpoint, as SIGUSR1 asked" in last_line and "resume with" in last_line, stderr
    assert not (run / ".lock").exists()
    assert "as SIGUSR1 asked" in (run / "log.txt").read_text().splitlines()[-1]


def test_sigterm_before_the_first_epoch_ends_is_reported_too(tmp_path):
    run = tmp_path / "run"
    process = _start("train", "--data", "digits", "--arch", "simple_cnn", "--epochs", "50", "--workers", "0", "--out", str(run))
    while not (run / "config.json").exists():  # set up, first epoch under way (seconds on digits)
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    said = "stopped by SIGTERM before the first epoch ended: there is nothing to resume; run the command again"
    assert stderr.strip().splitlines()[-1] == f"Error: {said}" and "Traceback" not in stderr
    assert (run / "log.txt").read_text().splitlines()[-1].endswith(said)


# --- --resume auto: the one cron line ---------------------------------------------------------------

def test_resume_auto_killed_at_random_seconds_ends_as_an_uninterrupted_run(run_cli, tiny, tmp_path):
    """``timeout -s TERM N tlcli train ... --resume auto`` run again and again, N drawn anew each
    time: while Python starts (no handler yet: -15), in the set-up, mid-epoch or mid-save."""
    epochs = 4  # a tenth of a second each, most of it the checkpoint's fsync
    whole, began = tmp_path / "whole", time.monotonic()
    uninterrupted = _start("train", *_options(tiny, whole, epochs=epochs))
    assert uninterrupted.wait(timeout=300) == 0, uninterrupted.communicate()
    lasted = time.monotonic() - began  # kills drawn within it land anywhere from Python's start to the last save
    run, draws, outcomes = tmp_path / "cron", random.Random(24), []
    for attempt in range(60):
        process = _start("train", *_options(tiny, run, epochs=epochs), "--resume", "auto")
        try:
            process.wait(timeout=draws.uniform(0.1, lasted))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        outcomes.append(process.returncode)
        if process.returncode == 0:
            break
        assert process.returncode in (143, -signal.SIGTERM) and "Traceback" not in stderr, (outcomes, stderr)
    assert outcomes[-1] == 0 and 143 in outcomes, outcomes
    assert _history(run) == _history(whole)
    assert not (run / ".lock").exists()
    finished = run_cli("train", *_options(tiny, run, epochs=epochs), "--resume", "auto")
    assert finished.code == 0 and "--resume auto: already finished" in finished.stderr
    assert "--resume auto: already finished" in (run / "log.txt").read_text()


def test_resume_auto_starts_resumes_finishes_and_extends(run_cli, tiny, tmp_path):
    run = tmp_path / "run"
    started = run_cli("train", *_options(tiny, run, epochs=1), "--resume", "auto")
    assert started.code == 0 and "--resume auto: started" in started.stderr
    extended = run_cli("train", *_options(tiny, run, epochs=2), "--resume", "auto")
    assert extended.code == 0 and "--resume auto: resumed" in extended.stderr
    assert [int(row[0]) for row in _history(run)] == [1, 2]
    # Another run's settings in the same folder are refused rather than silently ignored.
    other = run_cli("train", *_options(tiny, run, epochs=2), "--lr", "0.5", "--resume", "auto")
    assert other.code == 1 and "holds a run with other settings" in other.stderr and "optim.lr" in other.stderr
    phase2 = tmp_path / "phase2"
    for expected in ("started", "already finished"):
        tuned = run_cli("finetune", "--from", run, "--epochs", "1", "--out", phase2, "--resume", "auto")
        assert tuned.code == 0 and f"--resume auto: {expected}" in tuned.stderr, tuned.stderr


@pytest.mark.parametrize("args, message", [
    (["--resume", "auto"], "--resume auto needs --out"),
    (["--resume", "auto", "--out", "x", "--overwrite"], "contradict each other"),
])
def test_resume_auto_usage_errors_exit_2_before_the_data(run_cli, tmp_path, args, message):
    result = run_cli("train", "--data", tmp_path / "nowhere", "--arch", "mlp", *args)
    assert result.code == 2 and message in result.stderr, result.stderr


# --- A checkpoint knows its run ---------------------------------------------------------------------

def test_a_checkpoint_copied_into_another_run_is_not_resumed_and_is_named(run_cli, tiny, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    assert run_cli("train", *_options(tiny, first, epochs=1)).code == 0
    assert run_cli("train", *_options(tiny, second, epochs=1)).code == 0
    for name in ("last.pt", "best.pt"):
        shutil.copy(first / name, second / name)
    resumed = run_cli("train", "--resume", second / "last.pt", "--epochs", "2")
    assert resumed.code == 1 and f"is a checkpoint of the run in {first.resolve()}" in resumed.stderr, resumed.stderr
    evaluated = run_cli("evaluate", second, "--split", "val")
    assert evaluated.code == 0 and f"Warning: {second / 'best.pt'} is a checkpoint of the run in {first.resolve()}" in evaluated.stderr
    tuned = run_cli("finetune", "--from", second, "--epochs", "1", "--out", tmp_path / "tuned")
    assert tuned.code == 0 and "is a checkpoint of the run in" in tuned.stderr
    # A run folder moved as a whole is still its own run.
    moved = tmp_path / "moved"
    first.rename(moved)
    assert run_cli("train", "--resume", moved, "--epochs", "2").code == 0


def test_finetune_refuses_a_source_still_training_and_names_an_unfinished_one(run_cli, tiny, tmp_path):
    run = tmp_path / "run"
    process = _start("train", *_options(tiny, run, epochs=100_000))
    _wait_for_epoch_line(run, 1, process)
    try:
        locked = run_cli("finetune", "--from", run, "--epochs", "1", "--out", tmp_path / "tuned")
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert locked.code == 1 and "is still training" in locked.stderr, locked.stderr
    unfinished = run_cli("finetune", "--from", run, "--epochs", "1", "--out", tmp_path / "tuned")
    assert unfinished.code == 0, unfinished.stderr
    assert "of its 100000 epochs (it was stopped or killed)" in unfinished.stderr
