"""``tlcli.evaluation.report.document`` and ``study_plots``: the blocks of a report rendered as
Markdown (relative image links, escaped table cells) and as one self-contained HTML page (images
embedded, text escaped); ``write_report`` on a tiny trained run and on a study whose six
comparison figures ``plot_study`` drew; and what is neither."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.helpers import working_in, write_image
from tlcli.core.errors import TlcliError
from tlcli.evaluation.report import document, study_plots
from tlcli.evaluation.report.document import Block, write_report
from tlcli.evaluation.report.study_plots import plot_study

PNG = b"\x89PNG\r\n\x1a\n"
FIGURES = ["accuracy.png", "loss.png", "overfitting_gap.png", "convergence.png", "params_vs_time.png", "test_accuracy.png"]
RUN_SECTIONS = ["# mlp on ", "## TL;DR", "## Data set", "## Model", "## Configuration", "## Learning curves",
                "## Final metrics (val split)", "## Per class", "## Confusion matrix", "## Most confused pairs"]


@pytest.fixture(scope="module")
def run_report(tiny_run) -> dict:
    """The session's tiny run (4 images held out for val, no test split), reported by naming its best.pt."""
    with working_in(tiny_run.base, checkpoints=tiny_run.checkpoints):
        files = write_report(tiny_run.run_dir / "best.pt")
    run_dir = tiny_run.run_dir
    return {"run": run_dir, "data": tiny_run.folder, "files": files,
            "markdown": (run_dir / "report.md").read_text(), "html": (run_dir / "report.html").read_text()}

def _history(gap: float) -> list[dict]:
    return [{"epoch": e, "train_acc": 0.5 + gap * e, "val_acc": 0.5, "train_loss": 1 / e, "val_loss": 1.1 / e} for e in (1, 2, 3)]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    """A study folder as ``compare`` leaves it: comparison.json and plot_study's figures; two
    folds of mlp (fold means with their deviation) and one run of cnn without a test accuracy."""
    folder = tmp_path_factory.mktemp("study") / "arch-sweep"
    folder.mkdir()
    table = [
        {"name": "mlp", "arch": "mlp", "trainable": 16706, "total": 16706, "epochs_run": 3, "seconds": 1.25, "best_val_acc": 0.5,
         "best_val_loss": 0.69314, "test_acc": 0.75, "test_acc_std": 0.05, "f1_macro": 0.7, "gap": 0.1, "verdict": "good fit",
         "convergence_epoch": 2},
        {"name": "cnn", "arch": "simple_cnn", "trainable": 109386, "total": 109386, "epochs_run": 3, "seconds": 4.5,
         "best_val_acc": 0.625, "best_val_loss": 0.6, "test_acc": None, "f1_macro": None, "gap": 0.2, "verdict": "over-fitting",
         "convergence_epoch": 3},
    ]
    (folder / "comparison.json").write_text(json.dumps({"table": table, "runs": []}))
    runs = [SimpleNamespace(name="mlp", history=_history(0.05)), SimpleNamespace(name="mlp", history=_history(0.5)),
            SimpleNamespace(name="cnn", history=_history(0.1))]
    figures = plot_study(runs, table, folder, title="--data digits --epochs 3")
    return {"folder": folder, "figures": figures, "table": table}


def _links(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)


def _embedded(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_markdown_renders_each_kind_of_block(tmp_path):
    image = write_image(tmp_path / "figures" / "curve.png", size=(4, 4))
    blocks = [Block("heading", "Title", 1), Block("heading", "Section"), Block("text", "**bold** and `code`"),
              Block("code", "line 1\nline 2"), Block("table", (["name", "value"], [["a|b", "1"], ["c", "2"]])), Block("image", image)]

    markdown = document._markdown(blocks, tmp_path)

    assert markdown == ("# Title\n\n## Section\n\n**bold** and `code`\n\n```\nline 1\nline 2\n```\n\n"
                        "| name | value |\n|---|---|\n| a\\|b | 1 |\n| c | 2 |\n\n![curve](figures/curve.png)\n")


def test_html_escapes_the_text_marks_bold_and_embeds_each_image(tmp_path):
    image = write_image(tmp_path / "curve.png", size=(4, 4))
    blocks = [Block("heading", "<script>x</script>", 1), Block("text", "a **b & c** `d`"), Block("code", "if a < b:"),
              Block("table", (["<h>"], [["1 < 2"]])), Block("image", image)]

    page = document._html(blocks, "tlcli & <report>")

    assert "<title>tlcli &amp; &lt;report&gt;</title>" in page and "<script>" not in page
    assert "<h1>&lt;script&gt;x&lt;/script&gt;</h1>" in page
    assert "<p>a <strong>b &amp; c</strong> d</p>" in page
    assert "<pre>if a &lt; b:</pre>" in page
    assert "<th>&lt;h&gt;</th>" in page and "<td>1 &lt; 2</td>" in page
    assert _embedded(page) == [image.read_bytes()] and 'alt="curve"' in page


def test_the_most_confused_pairs_are_the_largest_off_diagonal_cells():
    classes = ["a", "b", "c"]
    matrix = np.array([[9, 4, 1], [2, 8, 6], [3, 5, 7]])

    assert document._confused_pairs(matrix, classes) == [["b", "c", 6], ["c", "b", 5], ["a", "b", 4], ["c", "a", 3], ["b", "a", 2]]
    assert document._confused_pairs(np.diag([3, 4, 5]), classes) == [["-", "-", 0]]


def test_a_run_report_has_every_section_in_order(run_report):
    markdown = run_report["markdown"]

    assert run_report["files"] == {"report.md": str(run_report["run"] / "report.md"), "report.html": str(run_report["run"] / "report.html")}
    assert markdown.startswith(f"# mlp on {run_report['data']}\n")
    positions = [markdown.index(section) for section in RUN_SECTIONS]
    assert positions == sorted(positions)


def _section(markdown: str, title: str) -> str:
    return markdown.split(f"## {title}\n")[1].split("\n## ")[0]


def _table_rows(section: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| ")][1:]


def test_a_run_report_states_the_runs_data_configuration_and_metrics(run_report):
    markdown = run_report["markdown"]

    assert _table_rows(_section(markdown, "Data set")) == [["train", "8"], ["val", "4"], ["test", "0"]]
    configuration = dict(_table_rows(_section(markdown, "Configuration")))
    assert (configuration["model.arch"], configuration["data.val_split"], configuration["run.epochs"]) == ("mlp", "0.34", "1")
    per_class = _table_rows(_section(markdown, "Per class"))
    assert [row[0] for row in per_class] == ["a", "b"] and sum(int(row[4]) for row in per_class) == 4
    # The TL;DR's accuracy is the metrics table's, on the 4 val images.
    accuracy = float(dict(_table_rows(_section(markdown, "Final metrics (val split)")))["accuracy"])
    assert f"reached **{accuracy:.1%} val accuracy**" in markdown and "on 4 held-out images after 1 epochs" in markdown
    assert "Total params: 16,706" in _section(markdown, "Model")


def test_a_run_reports_images_are_linked_in_markdown_and_embedded_in_html(run_report):
    links = _links(run_report["markdown"])

    assert links[0] == "curves.png" and len(links) == 2
    files = [run_report["run"] / link for link in links]
    assert all(path.is_file() and path.read_bytes().startswith(PNG) for path in files)
    assert _embedded(run_report["html"]) == [path.read_bytes() for path in files]
    assert "<h2>Most confused pairs</h2>" in run_report["html"]


def test_plot_study_draws_the_six_figures(study):
    assert sorted(study["figures"]) == sorted(FIGURES)
    for name, path in study["figures"].items():
        assert path == str(study["folder"] / name) and Path(path).read_bytes().startswith(PNG)


def test_the_curves_show_each_configurations_first_fold_only():
    runs = [SimpleNamespace(name=name, fold=fold) for name, fold in (("mlp", 1), ("mlp", 2), ("cnn", 1), ("cnn", 2))]

    assert [(run.name, run.fold) for run in study_plots._first_fold(runs)] == [("mlp", 1), ("cnn", 1)]


def test_a_study_report_has_the_comparison_table_and_its_figures(study):
    write_report(study["folder"])
    markdown = (study["folder"] / "report.md").read_text()

    assert markdown.startswith("# Study arch-sweep\n")
    assert "2 configurations compared on the same split and seed; best: **mlp** (test accuracy 0.7500" in markdown
    rows = _table_rows(_section(markdown, "Comparison"))
    assert rows[0][:3] == ["mlp", "mlp", "16706"] and rows[0][5] == "1.2500"  # floats to four places
    assert rows[1][8] == "-"  # no test accuracy
    assert _links(markdown) == FIGURES
    page = (study["folder"] / "report.html").read_text()
    assert _embedded(page) == [(study["folder"] / name).read_bytes() for name in FIGURES]


def test_a_study_without_figures_reports_its_table_only(study, tmp_path):
    (tmp_path / "comparison.json").write_text((study["folder"] / "comparison.json").read_text())

    write_report(tmp_path)

    markdown = (tmp_path / "report.md").read_text()
    assert "## Comparison" in markdown and _links(markdown) == [] and "<img" not in (tmp_path / "report.html").read_text()


def test_a_folder_that_is_neither_a_run_nor_a_study_is_refused(tmp_path):
    with pytest.raises(TlcliError, match="is neither a run folder .* nor a study folder"):
        write_report(tmp_path)
    assert list(tmp_path.iterdir()) == []
