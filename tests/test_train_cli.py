"""The training commands through the CLI: the Pokemon report's two phases as two commands."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.usefixtures("isolated")


def test_train_finetune_evaluate_predict_summary_from_the_command_line(run_cli, tmp_path):
    trained = run_cli("train", "--data", "digits", "--arch", "simple_cnn", "--epochs", "2", "--hflip", "--rotate", "10",
                      "--out", "checkpoints/p1", "--json")
    assert trained.code == 0, trained.stderr
    document = trained.json()
    assert document["epochs_run"] == 2 and document["phase"] == 1
    assert set(document["files"]) >= {"best.pt", "last.pt", "history.csv", "curves.png"}
    # Not a terminal: one plain line per epoch on stderr, no progress animation.
    epoch_lines = [line for line in trained.stderr.splitlines() if line.startswith("phase 1 epoch")]
    assert len(epoch_lines) == 2 and "\r" not in trained.stderr

    tuned = run_cli("finetune", "--from", "checkpoints/p1", "--epochs", "1", "--json")
    assert tuned.code == 0, tuned.stderr
    phase2 = tuned.json()
    assert phase2["phase"] == 2 and phase2["start"]["val_acc"] > 0.5
    assert phase2["final"]["epoch"] == 3

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
        (["train", "--data", "nowhere"], "no data set 'nowhere'"),
        (["train", "--arch", "mlp", "--freeze", "blocks:9"], "stages"),
        (["finetune", "--from", "no-such-run"], "no checkpoint or run"),
        (["evaluate"], "no run yet"),
        (["predict", "x.png"], "no run yet"),
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
