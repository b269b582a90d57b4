"""Command-line conventions: exit codes, streams, JSON, help, no tracebacks, no ANSI in pipes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tlcli import __version__

# Bare commands read the latest run: never the user's checkpoints/ (make demo leaves one there).
pytestmark = pytest.mark.usefixtures("isolated")

COMMANDS = [["summary"], ["models"], ["data"], ["data", "check"]]


def test_version(run_cli):
    result = run_cli("--version")
    assert result.code == 0 and result.stdout.strip() == f"tlcli {__version__}"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_that_documents_exit_codes(run_cli, command):
    result = run_cli(*command, "--help")
    assert result.code == 0
    assert "Usage:" in result.stdout
    if command != ["data"]:
        assert "Exit codes" in result.stdout


def test_usage_errors_exit_2_without_a_traceback(run_cli):
    for args in (["summary", "--no-such-option"], ["no-such-command"], ["summary", "--num-classes", "one"]):
        result = run_cli(*args)
        assert result.code == 2, args
        assert "Traceback" not in result.stderr + result.stdout


def test_runtime_errors_are_one_error_line_and_exit_1(run_cli):
    result = run_cli("summary", "--arch", "resnet19")
    assert result.code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: unknown architecture 'resnet19'")


def test_debug_adds_the_traceback(run_cli):
    result = run_cli("--debug", "summary", "--arch", "resnet19")
    assert result.code == 1
    assert "Traceback" in result.stderr and "ModelError" in result.stderr


def test_bad_hidden_sizes_are_a_usage_error(run_cli):
    result = run_cli("summary", "--arch", "mlp", "--hidden", "128,x")
    assert result.code == 2 and result.stderr == "Error: hidden takes comma-separated whole numbers such as 128,64; got '128,x'\n"


def test_models_lists_and_filters(run_cli):
    result = run_cli("models", "efficientnet_b", "--json")
    assert result.code == 0
    names = [row["name"] for row in result.json()]
    assert "efficientnet_b0" in names and all("efficientnet_b" in n for n in names)
    table = run_cli("models", "simple")
    assert "simple_cnn" in table.stdout and "mlp" not in table.stdout


def test_python_dash_m_in_a_pipe_has_no_ansi_codes_and_results_go_to_stdout():
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TERM")}
    done = subprocess.run(
        [sys.executable, "-m", "tlcli", "models", "resnet1"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0
    assert "resnet18" in done.stdout and "\x1b[" not in done.stdout + done.stderr
    assert "architectures" in done.stderr and "architectures" not in done.stdout


def test_no_color_is_honoured_even_on_a_forced_terminal():
    env = {**os.environ, "FORCE_COLOR": "1", "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "tlcli", "summary", "--arch", "nope"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 1
    assert "\x1b[3" not in done.stderr and "Error: unknown architecture" in done.stderr


def test_tables_in_a_pipe_are_plain_ascii(run_cli):
    result = run_cli("models", "resnet1")
    assert result.code == 0
    assert "| resnet18" in result.stdout and result.stdout.isascii()


def test_a_missing_data_folder_is_said_before_the_missing_imagenet_weights(run_cli, tmp_path):
    result = run_cli("train", "--data", str(tmp_path / "nowhere"), "--arch", "resnet18")  # no weights cached in the scratch TORCH_HOME
    assert result.code == 1 and result.stderr.startswith(f"Error: no data set '{tmp_path / 'nowhere'}': it is not a folder")


def test_summary_without_a_run_names_the_checkpoints_folder_in_use(run_cli, checkpoints_dir):
    result = run_cli("summary", "--depth", "0")
    assert result.code == 0 and result.stderr.startswith(f"no run in {checkpoints_dir} yet: showing efficientnet_b0")


@pytest.mark.parametrize("args", [["compare", "--sweep", "epochs"], ["compare", "--run", "no name"], ["export", "--format", "coreml"],
                                  ["sanity", "--out", "x"], ["lr-find", "--patience", "3"]])
def test_usage_errors_exit_2(run_cli, args):
    assert run_cli(*args).code == 2


def test_the_linear_probe_names_the_optimiser_settings_it_does_not_use(run_cli):
    result = run_cli("train", "--arch", "timm:test_resnet", "--input-size", "32", "--weights", "none", "--freeze", "backbone", "--head-fit", "probe", "--lr", "0.01", "--schedule", "step",
                     "--epochs", "1", "--workers", "0")
    assert result.code == 0, result.stderr
    assert "linear probe (L-BFGS, its L2 strength chosen on the validation split), so --lr 0.01, --schedule step do not apply" in result.stderr


def test_a_reader_that_closes_the_output_ends_a_command_quietly_with_141(monkeypatch, capsys):
    """`tlcli models | head -1`: the reader has what it wanted, as with any Unix filter."""
    from tlcli.cli import main

    class Closed:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

        def isatty(self):
            return False

    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["models", "--json"]) == 141
    assert capsys.readouterr().err == ""
