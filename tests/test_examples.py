"""Every recipe in examples/ runs end to end with SMOKE=1 (built-in data, offline, seconds)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from forked_cli import forked_tlcli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXPECTED = {
    "demo.sh": ["phase1/best.pt", "phase2/best.pt", "phase2-test.json", "phase2/eval-test/metrics.json", "samples/test"],
    "pokemon.sh": ["phase2/best.pt", "phase2/report.html", "phase2/eval-test/confusion_matrix.png"],
    "cifar10.sh": ["comparison.csv", "test_accuracy.png", "report.md", "runs/cnn/best.pt", "runs/transfer/best.pt"],
    "flowers.sh": ["phase1/best.pt", "phase2/best.pt", "phase2/report.md", "flowers.onnx"],
    "beans.sh": ["comparison.csv", "params_vs_time.png", "runs/freeze=blocks_4/best.pt", "report.html"],
    "mnist.sh": ["runs/mlp/fold-2/best.pt", "runs/resnet18/fold-1/best.pt", "comparison.json", "report.md"],
}


def test_every_example_is_covered():
    assert {path.name for path in EXAMPLES.glob("*.sh")} == set(EXPECTED)
    assert {path.name for path in EXAMPLES.glob("*.py")} == {"from_python.py"}


@pytest.fixture(scope="module")
def tlcli_command(tmp_path_factory):
    """What the scripts run as `$TLCLI`: tlcli forked from a process that imported torch once."""
    with forked_tlcli(tmp_path_factory.mktemp("forked-cli")) as command:
        yield " ".join(command)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs_in_smoke_mode(script, tmp_path, tlcli_command):
    env = {**os.environ, "SMOKE": "1", "OUT": str(tmp_path / "out"), "TLCLI": tlcli_command, "PYTHON": sys.executable,
           "TLCLI_CHECKPOINTS_DIR": str(tmp_path / "checkpoints")}
    done = subprocess.run(["bash", str(EXAMPLES / script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    for expected in EXPECTED[script]:
        assert (tmp_path / "out" / expected).exists(), expected


def test_the_python_example_runs_in_smoke_mode(tmp_path, monkeypatch, capsys):
    import runpy

    monkeypatch.setenv("SMOKE", "1")
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(EXAMPLES / "from_python.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert "phase 1: test accuracy" in printed and "phase 2: test accuracy" in printed and "parity pass" in printed
    assert (tmp_path / "out" / "phase2" / "best.torchscript.pt").exists()
