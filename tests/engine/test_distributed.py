"""Training in several processes: torchrun (and --nproc, which starts it) with
DistributedDataParallel on Gloo, two CPU processes. Each launch starts Python and torch three
times, so the module shares one two-process run (killed, resumed, evaluated) among its tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import tlcli
from tlcli.run.checkpoint import load_checkpoint
from tlcli.run.marker import MARKER
from tlcli.cli import main

from tests.helpers import make_class_folder

pytestmark = pytest.mark.usefixtures("isolated")

EPOCHS = 4
# The same global batch in both: 32 images in one process, 16 in each of two.
DIGITS = ["--data", "digits", "--arch", "mlp", "--workers", "0", "--epochs", str(EPOCHS)]
SPLIT = {"val": 359, "test": 179}  # the digits' default split


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(tlcli.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _torchrun(*arguments: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
               "-m", "tlcli", *arguments]
    return subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finished(process: subprocess.Popen) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=300)
    return process.returncode, stdout, stderr


def _kill_rank(launcher: subprocess.Popen, rank: int) -> None:
    """SIGKILL the worker torchrun started as ``rank`` (read from its environment)."""
    for task in Path(f"/proc/{launcher.pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if f"RANK={rank}".encode() in Path(f"/proc/{child}/environ").read_bytes().split(b"\0"):
                os.kill(int(child), signal.SIGKILL)
                return
    raise AssertionError(f"no rank {rank} among the launcher's processes")


def _cli_json(*arguments) -> dict:
    """``tlcli ARGUMENTS --json`` in this process; its document."""
    from io import StringIO
    from contextlib import redirect_stdout

    with redirect_stdout(StringIO()) as printed:
        assert main([*map(str, arguments), "--json"]) == 0
    return json.loads(printed.getvalue())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """One process, and two: killed (rank 1) mid-run, resumed through --nproc 2, then evaluated
    under torchrun."""
    root = tmp_path_factory.mktemp("distributed")
    one = _cli_json("train", *DIGITS, "--batch-size", "32", "--out", root / "one")
    two = root / "runs" / "two"
    launcher = _torchrun("train", *DIGITS, "--batch-size", "16", "--out", str(two))
    deadline = time.monotonic() + 300
    while not (two / "last.pt").exists():  # the first epoch saved: kill during the next ones
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()
        time.sleep(0.02)
    _kill_rank(launcher, 1)
    killed_at = time.monotonic()
    killed = _finished(launcher)
    ended_after = time.monotonic() - killed_at
    checkpoint_after_kill = load_checkpoint(two / "last.pt")["progress"]["epoch"]
    resumed = subprocess.run([sys.executable, "-m", "tlcli", "train", "--resume", str(two / "last.pt"), "--nproc", "2", "--json"],
                             env=_env(), capture_output=True, text=True, timeout=300)
    evaluated = _finished(_torchrun("evaluate", str(two), "--json"))
    return {"root": root, "one": one, "one_test": _cli_json("evaluate", root / "one"), "two": two, "killed": killed,
            "ended_after": ended_after, "epoch_after_kill": checkpoint_after_kill, "resumed": resumed, "evaluated": evaluated}


def test_a_killed_rank_ends_the_job_with_exit_1_within_seconds_and_leaves_a_whole_checkpoint(runs):
    code, _, stderr = runs["killed"]
    assert code == 1, stderr
    assert runs["ended_after"] < 15
    assert 1 <= runs["epoch_after_kill"] < EPOCHS  # killed mid-run; last.pt loaded whole


def test_the_killed_run_resumes_in_two_processes_and_finishes_in_one_folder(runs):
    resumed = runs["resumed"]
    assert resumed.returncode == 0, resumed.stderr
    document = json.loads(resumed.stdout)  # rank 0 alone prints
    assert document["epochs_run"] == EPOCHS and document["final"]["epoch"] == EPOCHS
    assert "2 processes (world size 2), batch 16 per process, global batch 32" in resumed.stderr
    assert sorted(os.listdir(runs["two"].parent)) == ["two"]  # one run folder (`latest` lives in the checkpoints folder)
    files = sorted(os.listdir(runs["two"]))
    # No lock, no temporary: of hidden files only the run folder's marker.
    assert files.count("best.pt") == 1 and [name for name in files if name.startswith(".")] == [MARKER]
    checkpoint = load_checkpoint(runs["two"] / "best.pt")
    assert checkpoint["world_size"] == 2
    assert not any(key.startswith("module.") for key in checkpoint["state_dict"])  # plain weights, not DDP's


def test_validation_and_test_count_every_image_once(runs):
    resumed = json.loads(runs["resumed"].stdout)
    assert resumed["final"]["val_images"] == runs["one"]["final"]["val_images"] == SPLIT["val"]
    code, stdout, stderr = runs["evaluated"]
    assert code == 0, stderr
    assert json.loads(stdout)["images"] == runs["one_test"]["images"] == SPLIT["test"]


def test_two_processes_reach_the_test_accuracy_of_one(runs):
    code, stdout, stderr = runs["evaluated"]
    assert code == 0, stderr
    assert abs(json.loads(stdout)["accuracy"] - runs["one_test"]["accuracy"]) <= 0.01
    assert runs["one_test"]["accuracy"] > 0.9


def test_resuming_with_another_number_of_processes_is_refused(runs, run_cli):
    refused = run_cli("train", "--resume", runs["two"] / "last.pt", "--epochs", EPOCHS + 1)
    assert refused.code == 1
    assert "trained by 2 processes and this run has 1" in refused.stderr and "--nproc 2" in refused.stderr


def test_the_feature_cache_in_two_processes_gives_the_head_of_one(tmp_path):
    """Each process extracts its shard, the features are gathered, rank 0 writes the cache file;
    the linear probe on them is then the same fit as in one process."""
    images = make_class_folder(tmp_path / "shapes", {"a": 12, "b": 12, "c": 12}, size=(16, 16))
    options = ["--data", str(images), "--arch", "simple_cnn", "--weights", "none", "--freeze", "backbone", "--input-size", "16",
               "--epochs", "2", "--workers", "0"]
    code, _, stderr = _finished(_torchrun("train", *options, "--cache-dir", str(tmp_path / "two-cache"), "--out", str(tmp_path / "two")))
    assert code == 0, stderr
    _cli_json("train", *options, "--cache-dir", tmp_path / "one-cache", "--out", tmp_path / "one")
    caches = [sorted((tmp_path / f"{n}-cache").glob("features-*.pt")) for n in ("one", "two")]
    assert [len(files) for files in caches] == [2, 2]  # train and val, each written once
    for mine, theirs in zip(*caches):
        torch.testing.assert_close(torch.load(mine)["values"], torch.load(theirs)["values"])
    one, two = (load_checkpoint(tmp_path / n / "best.pt") for n in ("one", "two"))
    assert one["head_fit"]["weight_decay"] == two["head_fit"]["weight_decay"]
    for key, value in one["state_dict"].items():
        torch.testing.assert_close(two["state_dict"][key], value)
