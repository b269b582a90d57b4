"""``tlcli.models.summary`` called directly: the totals and rows ``summarize`` reads from torchinfo,
the Trainable column (True, False, Partial, --), the JSON form, and ``summarize_architecture``
building a network without reading its weights."""

from __future__ import annotations

import pytest

from tlcli.core.config import ModelConfig
from tlcli.models.baselines import MLP
from tlcli.models.summary import summarize, summarize_architecture, summarize_built

pytestmark = pytest.mark.usefixtures("_one_thread", "isolated")


def _partly_frozen_mlp() -> MLP:
    """64 -> 16 -> 2: the hidden layer's weight frozen but not its bias, the head trainable."""
    model = MLP(2, input_size=8, hidden=(16,))
    model.layers[1].weight.requires_grad_(False)
    return model


def test_totals_count_every_parameter_and_the_trainable_ones():
    model = _partly_frozen_mlp()
    summary = summarize(model, (1, 1, 8, 8))
    assert summary.total_params == sum(p.numel() for p in model.parameters()) == 64 * 16 + 16 + 16 * 2 + 2
    assert summary.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad) == 16 + 16 * 2 + 2
    assert summary.input_shape == (1, 1, 8, 8)
    # float32: four bytes a parameter, in megabytes of 10^6 bytes.
    assert summary.params_mb == pytest.approx(summary.total_params * 4e-6)
    assert summary.total_mb > summary.params_mb


def test_trainable_column_says_true_false_partial_or_nothing_to_train():
    rows = {row["layer"]: row for row in summarize(_partly_frozen_mlp(), (1, 1, 8, 8)).rows}
    assert rows["Linear (1)"]["trainable"] == "Partial"
    assert rows["Linear (3)"]["trainable"] == "True"
    assert rows["Flatten (0)"]["trainable"] == "--"
    assert rows["Sequential (layers)"]["trainable"] == "Partial"
    frozen = MLP(2, input_size=8, hidden=(16,)).requires_grad_(False)
    assert {row["trainable"] for row in summarize(frozen, (1, 1, 8, 8)).rows if row["params"]} == {"False"}


def test_rows_give_each_layers_shapes_and_parameters_down_to_the_depth_asked():
    summary = summarize(MLP(2, input_size=8, hidden=(16,)), (3, 1, 8, 8), depth=2)
    rows = {row["layer"]: row for row in summary.rows}
    assert rows["Linear (1)"]["input_shape"] == [3, 64] and rows["Linear (1)"]["output_shape"] == [3, 16]
    assert rows["Linear (3)"]["params"] == 16 * 2 + 2
    assert rows["MLP (MLP)"]["depth"] == 0
    shallow = summarize(MLP(2, input_size=8, hidden=(16,)), (3, 1, 8, 8), depth=1)
    assert [row["layer"] for row in shallow.rows] == ["MLP (MLP)", "Sequential (layers)"]


def test_mult_adds_grow_with_the_batch():
    single = summarize(MLP(2, input_size=8, hidden=(16,)), (1, 1, 8, 8)).mult_adds
    assert single > 0
    assert summarize(MLP(2, input_size=8, hidden=(16,)), (2, 1, 8, 8)).mult_adds == 2 * single


def test_the_table_is_torchinfos_with_readable_units_and_the_trainable_column():
    table = summarize(_partly_frozen_mlp(), (1, 1, 8, 8)).table
    header = next(line for line in table.splitlines() if "Layer (type (var_name))" in line)
    for column in ("Input Shape", "Output Shape", "Param #", "Trainable"):
        assert column in header
    assert "Units." not in table
    assert "Total mult-adds (M)" in table and "Params size (MB)" in table


def test_summarizing_leaves_the_model_in_the_mode_it_was_in():
    model = MLP(2, input_size=8)
    model.train()
    summarize(model, (1, 1, 8, 8))
    assert model.training
    model.eval()
    summarize(model, (1, 1, 8, 8))
    assert not model.training


def test_to_dict_holds_the_totals_and_derives_the_non_trainable_count():
    summary = summarize(_partly_frozen_mlp(), (1, 1, 8, 8))
    document = summary.to_dict()
    assert document["input_shape"] == [1, 1, 8, 8]
    assert document["non_trainable_params"] == summary.total_params - summary.trainable_params == 64 * 16
    assert document["rows"] == summary.rows
    assert document["params_size_mb"] == round(summary.params_mb, 2)


def test_summarize_architecture_reads_no_weights_and_uses_the_preset_input(tmp_path, monkeypatch):
    # An empty torch cache: loading ImageNet weights would fail or download.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    built, summary = summarize_architecture(ModelConfig(arch="squeezenet1_1", num_classes=3), depth=1)
    assert built.weights == "imagenet (not loaded)"
    assert summary.input_shape == (1, 3, 224, 224)
    assert summary.total_params == sum(p.numel() for p in built.model.parameters())
    # The default freeze policy with pretrained weights leaves only the head trainable.
    assert summary.trainable_params == 512 * 3 + 3
    assert not (tmp_path / "empty-torch-home").exists()


def test_summarize_built_follows_the_built_models_input_size_and_freeze_state():
    built, _ = summarize_architecture(ModelConfig(arch="mlp", input_size=12, num_classes=4))
    summary = summarize_built(built, depth=1)
    assert summary.input_shape == (1, 1, 12, 12)
    assert summary.rows[0]["output_shape"] == [1, 4]
    assert summary.trainable_params == summary.total_params
    built.model.requires_grad_(False)
    assert summarize_built(built, depth=1).trainable_params == 0
