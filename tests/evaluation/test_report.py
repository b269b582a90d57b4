"""tlcli report writes the reports' documents for a run and for a study."""

from __future__ import annotations

import base64
import re

import pytest

pytestmark = pytest.mark.usefixtures("isolated")

SECTIONS = ("## TL;DR", "## Data set", "## Model", "## Configuration", "## Learning curves", "## Final metrics (test split)",
            "## Per class", "## Confusion matrix", "## Most confused pairs")


def test_run_report_has_every_section_and_embedded_images(run_cli, tmp_path):
    assert run_cli("train", "--arch", "mlp", "--epochs", "2", "--out", "checkpoints/run").code == 0
    result = run_cli("report", "--json")  # the latest run
    assert result.code == 0, result.stderr
    markdown = (tmp_path / "checkpoints" / "run" / "report.md").read_text()
    positions = [markdown.index(section) for section in SECTIONS]
    assert positions == sorted(positions)
    assert "Trainable" in markdown and "Total params: 109,386" in markdown  # the torchinfo table
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (tmp_path / "checkpoints" / "run" / link).is_file()
    per_class = markdown.split("## Per class")[1].split("##")[0]
    assert len([line for line in per_class.splitlines() if line.startswith("| ") and line[2].isdigit()]) == 10
    page = (tmp_path / "checkpoints" / "run" / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 2 and all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for data in images)
    assert page.count("<table>") >= 6 and "<h2>Most confused pairs</h2>" in page


def test_report_of_nothing_is_a_clear_error(run_cli, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("report", "empty")
    assert result.code == 1 and "neither a run folder" in result.stderr
