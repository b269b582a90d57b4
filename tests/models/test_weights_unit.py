"""``tlcli.models.weights`` called directly on files written in tmp_path: ``safe_torch_load``
refusing what is no checkpoint (and pickled code) with one sentence, ``read_state_dict`` finding
the tensors of a bare state dict, a wrapped one or a tlcli checkpoint, and ``load_weights_file``
loading what fits and saying what it did not."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import pytest
import torch

from tlcli.core.errors import CheckpointError, WeightsError
from tlcli.models.baselines import MLP
from tlcli.models.weights import load_weights_file, read_state_dict, safe_torch_load, timm_model
from tlcli.run.checkpoint import FORMAT, stamp

pytestmark = pytest.mark.usefixtures("_one_thread")
HEAD = "layers.3"  # of MLP(classes, input_size=8, hidden=(16,)): Flatten, Linear, ReLU, Linear


def _mlp(classes: int = 3, hidden: tuple[int, ...] = (16,)) -> MLP:
    return MLP(classes, input_size=8, hidden=hidden)


def _saved(tmp_path: Path, content, name: str = "weights.pt") -> Path:
    path = tmp_path / name
    torch.save(content, path)
    return path


def _assert_same_tensors(actual: dict, expected: dict) -> None:
    assert list(actual) == list(expected)
    assert all(torch.equal(actual[name], expected[name]) for name in expected)


def test_a_bare_state_dict_is_read_as_it_was_saved(tmp_path):
    state = _mlp().state_dict()
    _assert_same_tensors(read_state_dict(_saved(tmp_path, state)), state)


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict", "model"])
def test_a_state_dict_wrapped_by_a_training_script_is_unwrapped(tmp_path, key):
    state = _mlp().state_dict()
    path = _saved(tmp_path, {key: state, "epoch": 7, "best_acc": 0.9})
    _assert_same_tensors(read_state_dict(path), state)


def test_the_data_parallel_module_prefix_is_removed(tmp_path):
    state = _mlp().state_dict()
    path = _saved(tmp_path, {f"module.{name}": tensor for name, tensor in state.items()})
    _assert_same_tensors(read_state_dict(path), state)


def test_a_tlcli_checkpoint_gives_its_state_dict(tmp_path):
    model = _mlp()
    # The checkpoint's "model" entry describes the network (no tensors); its weights are "state_dict".
    checkpoint = stamp({"model": {"arch": "mlp", "num_classes": 3, "head": HEAD}, "state_dict": model.state_dict(), "history": []})
    path = _saved(tmp_path, checkpoint, "best.pt")
    assert torch.load(path, weights_only=True)["format"] == FORMAT
    _assert_same_tensors(read_state_dict(path), model.state_dict())


@pytest.mark.parametrize("content", [{"epoch": 3, "note": "no tensors"}, {}, [torch.ones(2)], {"state_dict": {"w": 1.0}}])
def test_a_file_holding_no_state_dict_is_refused(tmp_path, content):
    with pytest.raises(WeightsError, match="holds no state dict"):
        read_state_dict(_saved(tmp_path, content))


def test_a_missing_weights_file_is_named(tmp_path):
    with pytest.raises(WeightsError, match=r"weights file .*nowhere\.pt does not exist"):
        read_state_dict(tmp_path / "nowhere.pt")


def _torch_bytes(content) -> bytes:
    buffer = io.BytesIO()
    torch.save(content, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("contents, message", [
    (b"", r"is empty \(0 bytes\), not a checkpoint"),
    (b"epoch,loss\n1,0.5\n", "is not a readable checkpoint: not a PyTorch file, or corrupt"),
    (pickle.dumps({"epoch": 1}), "is not a readable checkpoint"),
    (_torch_bytes({"w": torch.ones(100)})[:300], "is truncated or corrupt, not a readable checkpoint"),
])
def test_what_is_no_checkpoint_is_refused_in_one_sentence_of_the_callers_kind(tmp_path, contents, message):
    path = tmp_path / "not-a-checkpoint.pt"
    path.write_bytes(contents)
    with pytest.raises(CheckpointError, match=message) as caught:
        safe_torch_load(path, CheckpointError, "checkpoint")
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_a_file_needing_pickled_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"

    class RunsACommand:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = _saved(tmp_path, {"state_dict": RunsACommand()})
    with pytest.raises(WeightsError, match="needs arbitrary pickled code to load") as caught:
        safe_torch_load(path, WeightsError, "weights file")
    assert "weights_only" not in str(caught.value)  # torch's advice to load unsafely is not passed on
    assert not marker.exists()


def test_a_file_needing_an_unsafe_class_names_it(tmp_path):
    path = _saved(tmp_path, {"weights": torch.ones(1), "where": Path("x")})
    with pytest.raises(WeightsError, match=r"\(pathlib\.\w*Path\)"):
        safe_torch_load(path, WeightsError, "weights file")


def test_weights_of_the_same_network_load_exactly(tmp_path):
    source = _mlp()
    target = _mlp()
    notes = load_weights_file(target, _saved(tmp_path, source.state_dict()), HEAD)
    _assert_same_tensors(target.state_dict(), source.state_dict())
    assert notes == [f"loaded 4 of 4 tensors from {tmp_path / 'weights.pt'}"]


def test_a_head_of_another_size_is_left_new_and_the_rest_loaded(tmp_path):
    source = _mlp(classes=10)
    target = _mlp(classes=3)
    fresh_head = target.layers[3].weight.clone()
    notes = load_weights_file(target, _saved(tmp_path, source.state_dict()), HEAD)
    assert torch.equal(target.layers[1].weight, source.layers[1].weight)
    assert torch.equal(target.layers[3].weight, fresh_head)
    assert any(note.startswith("loaded 2 of 4 tensors") for note in notes)
    assert "the head of another size re-initialised: layers.3.weight, layers.3.bias" in notes


def test_layers_of_another_size_outside_the_head_are_named_as_layers(tmp_path):
    source = MLP(3, input_size=8, hidden=(16, 8), hidden_dropout=0.0)
    target = MLP(3, input_size=8, hidden=(16, 4), hidden_dropout=0.0)
    notes = load_weights_file(target, _saved(tmp_path, source.state_dict()), "layers.5")
    assert torch.equal(target.layers[1].weight, source.layers[1].weight)
    assert any(note.startswith("layers of another size re-initialised: layers.3.weight") for note in notes)


def test_missing_and_unknown_tensors_are_reported(tmp_path):
    state = _mlp().state_dict()
    del state["layers.1.bias"]
    state["extra.weight"] = torch.zeros(2)
    target = _mlp()
    notes = load_weights_file(target, _saved(tmp_path, state), HEAD)
    assert "missing from the file: layers.1.bias" in notes
    assert "not used (unknown names): extra.weight" in notes
    assert torch.equal(target.layers[1].weight, state["layers.1.weight"])


def test_tensors_under_other_names_load_by_position_when_every_shape_agrees(tmp_path):
    source = _mlp()
    renamed = {f"port.{i}": tensor for i, tensor in enumerate(source.state_dict().values())}
    target = _mlp()
    notes = load_weights_file(target, _saved(tmp_path, renamed), HEAD)
    _assert_same_tensors(target.state_dict(), source.state_dict())
    assert "names its tensors differently; all 4 mapped by position" in notes[0]
    assert "port.0 -> layers.1.weight" in notes[0]


def test_weights_of_another_network_are_refused(tmp_path):
    other = {f"encoder.{i}": torch.zeros(5, 5) for i in range(3)}
    with pytest.raises(WeightsError, match="no tensor in .* matches this architecture's parameter names"):
        load_weights_file(_mlp(), _saved(tmp_path, other), HEAD)
    same_names_other_shapes = {name: torch.zeros(1) for name in _mlp().state_dict()}
    with pytest.raises(WeightsError, match="no tensor in .* has the shape this architecture gives it"):
        load_weights_file(_mlp(), _saved(tmp_path, same_names_other_shapes, "shapes.pt"), HEAD)


def test_timm_model_without_pretrained_weights_takes_the_class_count_and_dropout():
    pytest.importorskip("timm")
    model = timm_model("test_resnet", pretrained=False, num_classes=5, dropout=0.25)
    assert model.get_classifier().out_features == 5
    assert model.drop_rate == 0.25
