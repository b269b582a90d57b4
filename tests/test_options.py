"""Options where people type them: train --config FILE, compare with train options directly,
--debug after the command, and a warning for a frozen random backbone."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.usefixtures("isolated")


def test_a_config_file_gives_defaults_and_the_command_line_wins(run_cli, tmp_path):
    (tmp_path / "run.toml").write_text('arch = "mlp"\nhidden = [16]\nepochs = 3\nbatch-size = 512\nout = "checkpoints/from-file"\n')
    result = run_cli("train", "--config", "run.toml", "--epochs", "1", "--json")
    assert result.code == 0, result.stderr
    assert result.json()["epochs_run"] == 1  # the command line's, not the file's 3
    config = json.loads((tmp_path / "checkpoints/from-file/config.json").read_text())
    assert config["model"]["arch"] == "mlp" and config["model"]["hidden"] == [16]
    assert config["run"]["batch_size"] == 512 and config["run"]["epochs"] == 1


@pytest.mark.parametrize(
    "command,text,message",
    [
        ("train", 'arch = "mlp"\noptimiser = "sgd"\n', "unknown key 'optimiser' (did you mean optimizer?); valid keys: data, arch,"),
        ("sanity", 'optimizer = "lbfgs"\n', "bad value for optimizer: 'lbfgs' is not one of adam, adamw, sgd, rmsprop"),
        ("lr-find", "epochs = 0\n", "bad value for epochs:"),
        ("train", "epochs = [\n", "cannot read"),
    ],
)
def test_a_bad_config_file_exits_2_in_one_line_before_any_data_is_read(run_cli, tmp_path, command, text, message):
    (tmp_path / "bad.toml").write_text(text)
    result = run_cli(command, "--config", "bad.toml", "--data", "nowhere")  # no such data: nothing was read
    assert result.code == 2, result.stderr
    assert result.stderr.startswith("Error: bad.toml: " if "cannot" not in message else "Error: cannot read bad.toml")
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_compare_takes_train_options_directly(run_cli, tmp_path):
    (tmp_path / "study.toml").write_text('weights = "none"\nepochs = 3\nbase = "--hidden 8"\n[sweep]\nhidden = ["16", "32"]\n')
    result = run_cli("compare", "--config", "study.toml", "--data", "digits", "--arch", "mlp", "--epochs", "1", "-b", "512",
                     "--run", "own: --batch-size 1024", "--out", "study", "--json")
    assert result.code == 0, result.stderr
    assert {row["name"]: row["epochs_run"] for row in result.json()["table"]} == {"own": 1, "hidden=16": 1, "hidden=32": 1}
    runs = {run["name"]: run["config"] for run in json.loads((tmp_path / "study/study.json").read_text())["runs"]}
    # The file's options, then the command line's (-b is --batch-size, as in train), then each run's own.
    assert {name: (c["model"]["arch"], c["model"]["weights"], c["run"]["epochs"], c["run"]["batch_size"], c["model"]["hidden"])
            for name, c in runs.items()} == {
        "own": ("mlp", "none", 1, 1024, [8]), "hidden=16": ("mlp", "none", 1, 512, [16]), "hidden=32": ("mlp", "none", 1, 512, [32])}


def test_compare_refuses_a_bad_direct_option_or_study_file_key_before_training(run_cli, tmp_path):
    assert run_cli("compare", "--data", "nowhere", "--optimizer", "lbfgs", "--sweep", "arch=mlp").code == 2
    (tmp_path / "study.toml").write_text('out = "x"\n[sweep]\narch = ["mlp"]\n')
    result = run_cli("compare", "--config", "study.toml", "--data", "nowhere")
    assert result.code == 2 and "unknown key 'out'" in result.stderr and "valid keys: base, folds, runs, sweep, data" in result.stderr


def test_debug_works_after_the_command(run_cli):
    for args in (["train", "--data", "nowhere", "--arch", "mlp", "--debug"], ["--debug", "train", "--data", "nowhere", "--arch", "mlp"]):
        result = run_cli(*args)
        assert result.code == 1 and "Traceback" in result.stderr and "DataError" in result.stderr, args
    plain = run_cli("train", "--data", "nowhere", "--arch", "mlp")
    assert plain.code == 1 and "Traceback" not in plain.stderr


def test_a_frozen_random_backbone_is_warned_about(run_cli):
    warned = run_cli("train", "--data", "nowhere", "--arch", "mlp", "--weights", "none", "--freeze", "backbone")
    assert "Warning: --weights none --freeze backbone trains on random features" in warned.stderr
    assert warned.stdout == ""
    for quiet in (["--weights", "none"], ["--freeze", "backbone"], ["--weights", "none", "--freeze", "none"]):
        assert "Warning" not in run_cli("train", "--data", "nowhere", "--arch", "mlp", *quiet).stderr, quiet
