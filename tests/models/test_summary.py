"""``tlcli summary`` prints the reports' torchinfo figures exactly."""

from __future__ import annotations

import pytest

# Bare commands read the latest run: never the user's checkpoints/ (make demo leaves one there).
pytestmark = pytest.mark.usefixtures("isolated")


def test_pokemon_report_efficientnet_b0_totals(run_cli):
    result = run_cli("summary", "--arch", "efficientnet_b0", "--num-classes", "150", "--freeze", "backbone")
    assert result.code == 0, result.stderr
    text = result.stdout
    for line in (
        "Total params: 4,199,698",
        "Trainable params: 192,150",
        "Non-trainable params: 4,007,548",
        "Total mult-adds (M): 384.78",
        "Params size (MB): 16.80",
        "Estimated Total Size (MB): 125.28",
    ):
        assert line in text
    header = next(line for line in text.splitlines() if "Layer (type (var_name))" in line)
    for column in ("Input Shape", "Output Shape", "Param #", "Trainable"):
        assert column in header
    classifier_row = next(line for line in text.splitlines() if "Linear (1)" in line)
    assert "192,150" in classifier_row and classifier_row.rstrip().endswith("True")
    features_row = next(line for line in text.splitlines() if "(features)" in line)
    assert features_row.rstrip().endswith("False")


def test_cifar10_report_simple_cnn_parameter_count(run_cli):
    result = run_cli("summary", "--arch", "simple_cnn", "--num-classes", "10")
    assert result.code == 0
    assert "Trainable params: 2,122,186" in result.stdout


def test_json_summary_has_totals_rows_and_the_freeze_state(run_cli):
    result = run_cli("summary", "--arch", "resnet18", "--num-classes", "3", "--freeze", "blocks:2", "--json", "--depth", "1")
    assert result.code == 0
    document = result.json()
    assert document["freeze"] == "blocks:2"
    assert document["total_params"] == 11_178_051
    assert document["non_trainable_params"] == document["total_params"] - document["trainable_params"]
    rows = {row["layer"]: row for row in document["rows"]}
    assert rows["Sequential (layer1)"]["trainable"] == "False"
    assert rows["Sequential (layer3)"]["trainable"] == "True"
    assert rows["Linear (fc)"]["output_shape"] == [1, 3]
    assert all(row["depth"] <= 1 for row in document["rows"])


def test_bare_summary_shows_the_default_architecture_with_its_imagenet_head(run_cli):
    result = run_cli("summary")
    assert result.code == 0
    assert "efficientnet_b0" in result.stderr and "1000 classes" in result.stderr
    assert "Total params: 5,288,548" in result.stdout


def test_input_size_option_changes_the_shapes(run_cli):
    result = run_cli("summary", "--arch", "mlp", "--input-size", "8", "--json")
    assert result.json()["input_shape"] == [1, 1, 8, 8]
    assert result.json()["total_params"] == 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
