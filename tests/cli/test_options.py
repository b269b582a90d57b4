"""Options where people type them: train --config FILE, compare with train options directly,
--debug after the command, and a warning for a frozen random backbone."""

from __future__ import annotations

import csv
import json
import os

import pytest

from tlcli.core.config import OptimConfig, RunConfig, TrainConfig, check_config
from tlcli.core.errors import ConfigError

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
        ("train", 'arch = "mlp"\noptimiser = "sgd"\n', "unknown key 'optimiser' (did you mean optimizer?); valid keys: data, val-split,"),
        ("sanity", 'optimizer = "lbfgs"\n', "bad value for optimizer: 'lbfgs' is not one of adam, adamw, sgd, rmsprop"),
        ("lr-find", "epochs = 0\n", "bad value for epochs:"),
        ("train", "epochs = [\n", "cannot read"),
        # TOML's own types, strictly: click would read true as 1 (one epoch) and "0.1" as 0.1.
        ("train", "epochs = true\n", "bad value for epochs: expected a whole number, got true"),
        ("train", 'lr = "0.1"\n', 'bad value for lr: expected a number, got "0.1"'),
        ("sanity", "hflip = 1\n", "bad value for hflip: expected true or false, got 1"),
        ("train", "arch = 5\n", "bad value for arch: expected a string, got 5"),
        ("train", "lr = inf\n", "bad value for lr: inf is not a finite number"),
        ("train", "label-smoothing = nan\n", "bad value for label-smoothing: nan is not a finite number"),
        ("train", "seed = 1000000000000000000000000\n", "bad value for seed: 1000000000000000000000000 is not a seed: give a whole number from 0 to 4294967295"),
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


@pytest.mark.parametrize(
    "args,name",
    [
        (["train", "--epochs", "3", "--epochs", "5"], "--epochs is given twice"),
        (["train", "-e", "3", "--epochs", "5", "-e", "7"], "--epochs is given 3 times"),
        (["train", "--lr", "0.1", "--lr", "0.2"], "--lr is given twice"),
        (["sanity", "--arch", "mlp", "--arch", "simple_cnn"], "--arch is given twice"),
        (["train", "--channels-last", "--no-channels-last"], "--channels-last/--no-channels-last is given twice"),
        (["compare", "--seed", "1", "--sweep", "arch=mlp", "--seed", "2"], "--seed is given twice"),
        (["data", "check", "nowhere", "--seed", "1", "--seed", "2"], "--seed is given twice"),
        (["evaluate", "nowhere", "--split", "val", "--split", "test"], "--split is given twice"),
        (["serve", "nowhere", "--port", "8001", "--port", "8002"], "--port is given twice"),
        (["predict", "x.png", "y.png", "--topk", "1", "--topk", "2"], "--topk is given twice"),
    ],
)
def test_an_option_given_twice_exits_2_naming_it_before_any_data_is_read(run_cli, args, name):
    result = run_cli(*args, *(["--data", "nowhere"] if args[0] in ("train", "sanity", "compare") else []))
    assert result.code == 2, result.stderr
    assert result.stderr.strip() == f"Error: {name}; it takes one value, so give it once"


def test_config_given_twice_applies_both_in_order_under_the_command_line(run_cli, tmp_path):
    (tmp_path / "a.toml").write_text('arch = "mlp"\nhidden = [16]\nepochs = 3\nbatch-size = 64\nout = "checkpoints/both"\n')
    (tmp_path / "b.toml").write_text("epochs = 1\nbatch-size = 128\nweight-decay = 0.5\n")
    result = run_cli("train", "--config", "a.toml", "--config", "b.toml", "--weight-decay", "0.25", "--json")
    assert result.code == 0, result.stderr
    config = json.loads((tmp_path / "checkpoints/both/config.json").read_text())
    assert (config["model"]["arch"], config["model"]["hidden"]) == ("mlp", [16])  # only a.toml sets them
    assert (config["run"]["epochs"], config["run"]["batch_size"]) == (1, 128)  # b.toml over a.toml
    assert config["optim"]["weight_decay"] == 0.25  # the command line over both


@pytest.mark.parametrize("kind", ["link to /dev/zero", "fifo", "folder", "too large"])
def test_a_config_file_that_is_no_small_regular_file_exits_2_before_reading_it(run_cli, tmp_path, kind):
    path = tmp_path / "bad.toml"
    if kind == "folder":
        path.mkdir()
    elif kind == "link to /dev/zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)  # read, it would wait for a writer forever
    else:
        path.write_text("# " + "x" * (1 << 20) + "\n")
    expected = "is larger than 1,048,576 bytes" if kind == "too large" else "is not a regular file"
    for command in (["train", "--data", "nowhere"], ["compare", "--data", "nowhere"], ["finetune", "--from", "nowhere"]):
        result = run_cli(*command, "--config", "bad.toml")
        assert result.code == 2, result.stderr
        assert result.stderr.startswith("Error: config file bad.toml ") and expected in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "config,message",
    [
        (TrainConfig(optim=OptimConfig(lr=float("inf"))), "lr must be a finite number, got inf"),
        (TrainConfig(optim=OptimConfig(weight_decay=float("nan"))), "weight decay must be a finite number, got nan"),
        (TrainConfig(run=RunConfig(seed=2**32)), "is not a seed: give a whole number from 0 to 4294967295"),
    ],
)
def test_check_config_refuses_what_no_option_could_give(config, message):
    with pytest.raises(ConfigError, match=message):
        check_config(config)


def test_finetune_takes_a_config_file_and_resumes_a_phase_2_run(run_cli, tmp_path):
    assert run_cli("train", "--arch", "mlp", "--weights", "none", "--epochs", "1", "--workers", "0", "--out", "p1").code == 0
    (tmp_path / "phase2.toml").write_text('epochs = 1\nlr = 0.001\nhflip = true\nout = "p2"\n')
    result = run_cli("finetune", "--from", "p1", "--config", "phase2.toml", "--json")
    assert result.code == 0, result.stderr
    assert result.json()["epochs_run"] == 1
    config = json.loads((tmp_path / "p2" / "config.json").read_text())
    assert config["augment"]["hflip"] is True and config["optim"]["lr"] == 0.001

    (tmp_path / "bad.toml").write_text('epoch = 2\n')
    bad = run_cli("finetune", "--from", "p1", "--config", "bad.toml")
    assert bad.code == 2 and bad.stderr.startswith("Error: bad.toml: unknown key 'epoch' (did you mean epochs?); valid keys: from, unfreeze,")

    resumed = run_cli("finetune", "--from", "p1", "--resume", "p2", "--epochs", "2", "--json")
    assert resumed.code == 0, resumed.stderr
    with open(tmp_path / "p2" / "history.csv") as file:
        assert [row["phase"] for row in csv.DictReader(file)] == ["1", "2", "2"]
    refused = run_cli("finetune", "--from", "p1", "--resume", "p2", "--lr", "0.1")
    assert refused.code == 2 and "only --epochs may change, not --lr" in refused.stderr
    not_its_parent = run_cli("finetune", "--from", "p2", "--resume", "p2")
    assert not_its_parent.code == 1 and "is not a phase-2 run fine-tuned from" in not_its_parent.stderr
