"""Every recipe in examples/ runs end to end with SMOKE=1 (built-in data, offline, seconds)."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.forked_cli import forked_tlcli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXPECTED = {
    "demo.sh": ["phase1/best.pt", "phase2/best.pt", "phase2-test.json", "phase2/eval-test/metrics.json", "samples/test"],
    "pokemon.sh": ["phase2/best.pt", "phase2/report.html", "phase2/eval-test/confusion_matrix.png"],
    "cifar10.sh": ["comparison.csv", "test_accuracy.png", "report.md", "runs/cnn/best.pt", "runs/transfer/best.pt"],
    "flowers.sh": ["phase1/best.pt", "phase2/best.pt", "phase2/report.md", "flowers.onnx"],
    "beans.sh": ["comparison.csv", "params_vs_time.png", "runs/freeze=blocks_4/best.pt", "report.html"],
    "mnist.sh": ["runs/mlp/fold-2/best.pt", "runs/resnet18/fold-1/best.pt", "comparison.json", "report.md"],
}


def _beans_freeze_sweep(out: Path) -> None:
    """The sweep of how much of ResNet-18 stays frozen: fewer trainable parameters each step, the
    last only the head's, on one network."""
    table = json.loads((out / "comparison.json").read_text())["table"]
    assert [row["name"] for row in table] == ["freeze=blocks:0", "freeze=blocks:4"]
    assert table[0]["trainable"] > table[1]["trainable"] == 512 * 10 + 10
    assert table[0]["total"] == table[1]["total"]


def _cifar10_comparison(out: Path) -> None:
    """The study's table, its files and six figures, one row per run."""
    table = json.loads((out / "comparison.json").read_text())["table"]
    rows = {row["name"]: row for row in table}
    assert set(rows) == {"cnn", "transfer"} and rows["cnn"]["trainable"] == 2_122_186
    for row in rows.values():
        assert row["epochs_run"] == 1 and row["seconds"] > 0 and 0 <= row["test_acc"] <= 1 and 0 <= row["f1_macro"] <= 1
        assert row["verdict"] in ("over-fitting", "under-fitting", "balanced")
    with open(out / "comparison.csv") as stream:
        assert [r["name"] for r in csv.DictReader(stream)] == ["cnn", "transfer"]
    for figure in ("accuracy.png", "loss.png", "overfitting_gap.png", "convergence.png", "params_vs_time.png", "test_accuracy.png"):
        with Image.open(out / figure) as image:
            assert image.format == "PNG" and image.width >= 600
    # tlcli report of the study: the table and the six figures, embedded in the page.
    markdown = (out / "report.md").read_text()
    assert "## Comparison" in markdown and "| cnn |" in markdown and "| transfer |" in markdown
    assert len(re.findall(r"!\[", markdown)) == 6
    assert len(re.findall("data:image/png;base64", (out / "report.html").read_text())) == 6


# What a script's outputs must say beyond existing, where no other test runs the same path.
CHECKS = {"beans.sh": _beans_freeze_sweep, "cifar10.sh": _cifar10_comparison}


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
    CHECKS.get(script, lambda out: None)(tmp_path / "out")


def test_the_python_example_runs_in_smoke_mode(tmp_path, monkeypatch, capsys):
    import runpy

    monkeypatch.setenv("SMOKE", "1")
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(EXAMPLES / "from_python.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert "phase 1: test accuracy" in printed and "phase 2: test accuracy" in printed and "parity pass" in printed
    assert (tmp_path / "out" / "phase2" / "best.torchscript.pt").exists()
