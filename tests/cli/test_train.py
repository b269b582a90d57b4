"""The training commands through the CLI: the Pokemon report's two phases as two commands."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tlcli
from tlcli.run.folder import RunFolder


pytestmark = pytest.mark.usefixtures("isolated")

KILL_HOOK = Path(__file__).parents[1] / "kill_hook"
# A plain epoch line: the time, as log.txt writes it, then the epoch.
STAMPED_EPOCH = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d phase (\d+) epoch (\d+): ")


def _tiny_options(data: Path, out, epochs: int = 1) -> list[str]:
    return ["--data", str(data), "--arch", "mlp", "--val-split", "0.34", "--test-split", "0", "--workers", "0",
            "--epochs", str(epochs), "--out", str(out)]


def _tlcli(*args: str, **env: str) -> subprocess.Popen:
    """``tlcli ARGS`` in a fresh process whose Ctrl-C is Python's (a shell's background job ignores it)."""
    path = os.pathsep.join([str(KILL_HOOK), str(Path(tlcli.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])
    return subprocess.Popen([sys.executable, "-m", "tlcli", *args], env={**os.environ, "PYTHONPATH": path, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_train_finetune_evaluate_predict_summary_from_the_command_line(run_cli, tmp_path):
    trained = run_cli("train", "--data", "digits", "--arch", "simple_cnn", "--epochs", "2", "--hflip", "--rotate", "10",
                      "--out", "checkpoints/p1", "--json")
    assert trained.code == 0, trained.stderr
    document = trained.json()
    assert document["epochs_run"] == 2 and document["phase"] == 1
    assert set(document["files"]) >= {"best.pt", "last.pt", "history.csv", "curves.png"}
    # Not a terminal: one time-stamped line per epoch on stderr, no progress animation; decoding
    # says how many images it decoded and how fast.
    epoch_lines = [line for line in trained.stderr.splitlines() if STAMPED_EPOCH.match(line)]
    assert len(epoch_lines) == 2 and "\r" not in trained.stderr
    assert re.search(r"decoding train images: \d+ img in [\d.]+ s \(\d+ img/s\)", trained.stderr), trained.stderr

    tuned = run_cli("finetune", "--from", "checkpoints/p1", "--epochs", "1", "--json")
    assert tuned.code == 0, tuned.stderr
    phase2 = tuned.json()
    assert phase2["phase"] == 2 and phase2["start"]["val_acc"] > 0.5
    # One numbering, the history's, which runs on across phases: phase 2's first epoch is 3, and
    # its best is that epoch or phase 1's model, epoch 2.
    assert phase2["final"]["epoch"] == 3 and phase2["epochs_run"] == 1
    assert (phase2["best_epoch"], phase2["best_phase"]) in ((3, 2), (2, 1))
    assert "phase 2 epoch 3: " in Path(phase2["run_dir"], "log.txt").read_text()

    evaluated = run_cli("evaluate", "--json")  # the latest run: phase 2
    assert evaluated.code == 0, evaluated.stderr
    assert evaluated.json()["checkpoint"].endswith("best.pt") and evaluated.json()["accuracy"] > 0.8

    exported = run_cli("data", "export", "digits", "samples", "--limit", "1")
    assert exported.code == 0
    predicted = run_cli("predict", "samples/test", "--json")
    assert predicted.code == 0
    assert len(predicted.json()) == 10

    summary = run_cli("summary", "checkpoints/p1", "--json")
    assert summary.code == 0 and summary.json()["total_params"] == 2_122_186
    bare = run_cli("summary")
    assert bare.code == 0 and "showing the model saved in" in bare.stderr


def test_resume_continues_an_interrupted_run_from_the_cli(run_cli):
    assert run_cli("train", "--arch", "mlp", "--epochs", "2", "--out", "checkpoints/r").code == 0
    again = run_cli("train", "--resume", "checkpoints/r/last.pt", "--epochs", "3", "--json")
    assert again.code == 0, again.stderr
    assert again.json()["epochs_run"] == 3
    checkpoint = torch.load("checkpoints/r/last.pt", weights_only=True)
    assert [row["epoch"] for row in checkpoint["history"]] == [1, 2, 3]


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--data", "nowhere", "--arch", "mlp"], "no data set 'nowhere'"),
        (["finetune", "--from", "no-such-run"], "no checkpoint or run"),
        (["evaluate"], "no run yet"),
        (["predict", "x.png"], "no images to predict"),  # checked before looking for a run
    ],
)
def test_bad_training_input_is_one_error_line_and_exit_1(run_cli, args, message):
    result = run_cli(*args)
    assert result.code == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("Error:")] == [
        line for line in result.stderr.splitlines() if line.strip()
    ][-1:]


@pytest.mark.parametrize(
    "args,valid",
    [
        (["train", "--arch", "resnet19"], "closest: resnet18"),
        (["train", "--optimizer", "lbfgs"], "adam, adamw, sgd, rmsprop"),
        (["train", "--schedule", "exp"], "none, cosine, step, plateau, onecycle"),
        (["train", "--amp", "fp8"], "auto, bf16, fp16, off"),
        (["train", "--monitor", "f1"], "val_loss, val_acc"),
        (["train", "--head-fit", "sgd"], "auto, probe, epochs"),
        (["train", "--freeze", "blah"], "none, backbone, all, last:N, blocks:N, re:PATTERN"),
        (["train", "--freeze", "re:("], "bad regular expression"),
        (["sanity", "--cache-images", "ram"], "auto, memory, disk, off"),
        (["lr-find", "--device", "gpu"], "auto, cpu, cuda, cuda:N, mps"),
        (["finetune", "--from", "nowhere", "--unfreeze", "some"], "none, backbone, all"),
        # Values that only the network's structure or another option rules out, refused as early.
        (["train", "--arch", "mlp", "--freeze", "blocks:9"], "this network has 2 stages, so N goes from 0 to 2"),
        (["train", "--arch", "mlp", "--weights", "imagenet"], "mlp is trained from scratch"),
        (["train", "--arch", "mlp", "--head-fit", "probe"], "--head-fit probe needs a frozen backbone"),
        (["train", "--arch", "simple_cnn", "--cache-features", "on"], "--cache-features on needs a frozen backbone"),
        (["train", "--head-fit", "probe", "--cache-features", "off"], "which --cache-features off turns off"),
        (["train", "--val-split", "0.6", "--test-split", "0.5"], "leave nothing for training"),
        # Numbers no run can take: torch and numpy seeds, and floats that are not finite.
        (["train", "--seed", "1" + "0" * 23], "is not a seed: give a whole number from 0 to 4294967295"),
        (["lr-find", "--seed", "-1"], "is not a seed: give a whole number from 0 to 4294967295"),
        (["train", "--lr", "inf"], "inf is not a finite number"),
        (["train", "--lr", "nan"], "nan is not a finite number"),
        (["sanity", "--weight-decay", "inf"], "inf is not a finite number"),
        (["train", "--max-bad", "inf"], "inf is not a finite number"),
        (["train", "--grad-clip", "nan"], "nan is not a finite number"),
        (["finetune", "--from", "nowhere", "--backbone-lr-mult", "inf"], "inf is not a finite number"),
    ],
)
def test_a_bad_choice_exits_2_with_the_valid_ones_before_any_data_is_read(run_cli, args, valid):
    # The data and the run named here do not exist: exit 2 (not 1) shows nothing was read first.
    result = run_cli(*args, *(["--data", "nowhere"] if args[0] != "finetune" else []))
    assert result.code == 2, result.stderr
    assert valid in result.stderr and "Traceback" not in result.stderr


def test_usage_errors_on_training_options_exit_2(run_cli):
    assert run_cli("train", "--epochs", "0").code == 2
    assert run_cli("train", "--lr", "fast").code == 2
    assert run_cli("finetune").code == 2  # --from is required


def test_a_num_classes_that_contradicts_the_data_is_an_error_not_ignored(run_cli):
    result = run_cli("train", "--arch", "mlp", "--epochs", "1", "--num-classes", "3", "--out", "checkpoints/n")
    assert result.code == 2, result.stderr
    assert "--num-classes 3 does not match the data's 10 classes" in result.stderr and "Traceback" not in result.stderr
    assert not Path("checkpoints/n/best.pt").exists()
    agreeing = run_cli("train", "--arch", "mlp", "--epochs", "1", "--num-classes", "10", "--out", "checkpoints/n", "--json")
    assert agreeing.code == 0, agreeing.stderr
    assert torch.load("checkpoints/n/best.pt", weights_only=True)["model"]["num_classes"] == 10


def test_a_finished_or_locked_run_folder_is_refused_before_the_data_is_read(run_cli, tiny, tmp_path):
    run = tmp_path / "run"
    assert run_cli("train", *_tiny_options(tiny, run)).code == 0
    before = (run / "last.pt").read_bytes()
    # The data named here holds no image: the folder's error, not the data's, shows the order.
    empty = tmp_path / "empty"
    empty.mkdir()
    finished = run_cli("train", *_tiny_options(empty, run))
    assert finished.code == 1 and "already holds a run" in finished.stderr and "is empty" not in finished.stderr
    with RunFolder(run).open(fresh=False):
        locked = run_cli("train", *_tiny_options(empty, run), "--overwrite")
    assert locked.code == 1 and "is in use by tlcli pid" in locked.stderr and "is empty" not in locked.stderr
    # --overwrite clears the old run only once the new one is ready to write: a failed set-up leaves it whole.
    failed = run_cli("train", *_tiny_options(empty, run), "--overwrite")
    assert failed.code == 1 and "is empty" in failed.stderr
    assert (run / "last.pt").read_bytes() == before
    # A run that fails before writing anything leaves no empty folder behind.
    assert run_cli("train", *_tiny_options(tmp_path / "nowhere", tmp_path / "new")).code == 1
    assert not (tmp_path / "new").exists()


def test_ctrl_c_after_an_epoch_says_how_to_resume_on_stderr_and_in_the_log(run_cli, tiny, tmp_path):
    run = tmp_path / "run"
    process = _tlcli("train", *_tiny_options(tiny, run, epochs=100_000))
    for line in process.stderr:
        if STAMPED_EPOCH.match(line):
            break
    process.send_signal(signal.SIGINT)
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 130, stderr
    message = re.search(r"interrupted after epoch (\d+); resume with: tlcli train --resume (\S+)$", stderr.strip().splitlines()[-1])
    assert message, stderr
    epoch = int(message.group(1))
    assert Path(message.group(2)) == run / "last.pt"
    assert torch.load(run / "last.pt", weights_only=True)["progress"]["epoch"] == epoch
    assert (run / "log.txt").read_text().splitlines()[-1].endswith(message.group(0))
    assert not (run / ".lock").exists()
    resumed = run_cli("train", "--resume", message.group(2), "--epochs", str(epoch + 1), "--json")
    assert resumed.code == 0, resumed.stderr
    assert [row["epoch"] for row in torch.load(run / "last.pt", weights_only=True)["history"]] == list(range(1, epoch + 2))


def test_ctrl_c_before_the_first_epoch_ends_says_there_is_nothing_to_resume(run_cli, tiny, tmp_path):
    run = tmp_path / "run"
    # Ctrl-C as the run writes config.json (the kill hook's 4th call in the folder: the run marker takes the first three).
    process = _tlcli("train", *_tiny_options(tiny, run), TLCLI_KILL_DIR=str(run), TLCLI_KILL_AT="4", TLCLI_KILL_SIGNAL="SIGINT",
                     TLCLI_KILL_LOG=str(tmp_path / "calls.txt"))
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 130, stderr
    said = "interrupted before the first epoch ended: there is nothing to resume; run the command again"
    assert stderr.strip().splitlines()[-1] == f"Error: {said}"
    assert (run / "log.txt").read_text().splitlines()[-1].endswith(said)
    assert not (run / ".lock").exists() and not (run / "last.pt").exists()
    again = run_cli("train", *_tiny_options(tiny, run))  # the folder holds no run: no --overwrite needed
    assert again.code == 0, again.stderr


def test_resume_refuses_any_changed_option_but_epochs(run_cli):
    # Refused before the checkpoint is even looked for: exit 2, one line naming the options.
    result = run_cli("train", "--resume", "nowhere/last.pt", "--lr", "0.5", "--batch-size", "8", "--epochs", "20")
    assert result.code == 2, result.stderr
    assert result.stderr.strip() == "Error: --resume continues the run as its checkpoint configures it; only --epochs may change, not --batch-size, --lr"
    again = run_cli("train", "--resume", "nowhere/last.pt", "--data", "digits")  # even the default value, once typed
    assert again.code == 2 and again.stderr.strip().endswith("not --data")


def test_resume_falls_back_to_best_pt_when_a_kill_left_no_last_pt(run_cli, tiny, tmp_path):
    run = tmp_path / "run"
    assert run_cli("train", *_tiny_options(tiny, run)).code == 0
    (run / "last.pt").unlink()  # as a kill between the first epoch's best.pt and last.pt leaves it
    resumed = run_cli("train", "--resume", run / "last.pt", "--epochs", "2")
    assert resumed.code == 0, resumed.stderr
    note = f"{run / 'last.pt'} is missing (a kill during a run's first save leaves only best.pt): resuming from {run / 'best.pt'}, epoch 1"
    assert f"Warning: {note}" in resumed.stderr and note in (run / "log.txt").read_text()
    assert [row["epoch"] for row in torch.load(run / "last.pt", weights_only=True)["history"]] == [1, 2]


def test_config_json_holds_resolved_values_beside_what_was_asked(run_cli, tiny, tmp_path):
    run = tmp_path / "run"
    assert run_cli("train", *_tiny_options(tiny, run), "--batch-size", "4").code == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == {**config["model"], "num_classes": 2, "weights": "none", "freeze": "none", "input_size": 28, "dropout": 0.0}
    assert config["run"] == {**config["run"], "device": "cpu", "amp": "off", "channels_last": False, "workers": 0, "batch_size": 4}
    assert config["optim"]["lr"] == 1e-3
    assert config["requested"] == {
        "model": {"num_classes": None, "weights": None, "dropout": None, "freeze": None, "input_size": None},
        "optim": {"lr": None},
        "run": {"device": "auto", "amp": "auto", "channels_last": None},
    }


def test_latest_is_made_in_the_checkpoints_folder_for_a_run_elsewhere(run_cli, tiny, tmp_path, checkpoints_dir):
    run = tmp_path / "elsewhere" / "run"
    assert run_cli("train", *_tiny_options(tiny, run)).code == 0
    assert (checkpoints_dir / "latest").resolve() == run.resolve()
    assert not (tmp_path / "elsewhere" / "latest").exists()
    evaluated = run_cli("evaluate", "--split", "val", "--json")  # the latest run, found through the link
    assert evaluated.code == 0, evaluated.stderr
    assert evaluated.json()["checkpoint"] == str(run.resolve() / "best.pt")


def test_finetune_text_numbers_epochs_as_the_history_does(run_cli, tiny, tmp_path):
    assert run_cli("train", *_tiny_options(tiny, tmp_path / "p1", epochs=2)).code == 0
    beyond = run_cli("finetune", "--from", tmp_path / "p1", "--unfreeze", "blocks:3")  # checked on phase 1's network, before its data
    assert beyond.code == 2 and "this network has 2 stages" in beyond.stderr
    tuned = run_cli("finetune", "--from", tmp_path / "p1", "--epochs", "2", "--lr", "1e-12", "--out", tmp_path / "p2")
    assert tuned.code == 0, tuned.stderr
    assert "last epoch 4: " in tuned.stdout
    # Phase 2 at a rate of 1e-12 beats nothing: its best is phase 1's model, epoch 2 in the same numbering.
    assert "best val_acc: " in tuned.stdout and " at epoch 2 (phase 1): no epoch of this phase beat it" in tuned.stdout
    assert [m.groups() for m in map(STAMPED_EPOCH.match, tuned.stderr.splitlines()) if m] == [("2", "3"), ("2", "4")]


def test_decoding_and_the_lr_range_test_show_progress(run_cli, tiny, tmp_path):
    found = run_cli("lr-find", "--data", str(tiny), "--arch", "mlp", "--iterations", "5", "--plot", "lr.png", "--workers", "0")
    assert found.code == 0, found.stderr
    assert re.search(r"learning-rate range test: \d+ steps in [\d.]+ s \(\d+ steps/s\)", found.stderr), found.stderr
    # On a terminal (rich takes TTY_COMPATIBLE=1 for one) the decode bar counts images and their
    # rate, not an epoch's loss and accuracy.
    process = _tlcli("train", *_tiny_options(tiny, tmp_path / "run"), "--cache-images", "memory", TTY_COMPATIBLE="1")
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 0, stderr
    assert re.search(r"decoding train images .*8/8.* img, \d+ img/s", stderr), stderr
    assert "loss 0.0000" not in stderr
