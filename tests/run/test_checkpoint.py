"""The checkpoint file: what it holds, how it is written, how it fails to load, and how it is found."""

from __future__ import annotations

import os
import pathlib
import pickle
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

import tlcli
from tlcli.run.checkpoint import FORMAT, VERSION, atomic_save, load_checkpoint, model_from_checkpoint
from tlcli.core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from tlcli.data.sources import load_data
from tlcli.data.transforms import build_transform
from tlcli.core.errors import CheckpointError
from tlcli.models.registry import build_model
from tlcli.run.locate import resolve_checkpoint
from tests.helpers import train

from tests.helpers import write_image

pytestmark = pytest.mark.usefixtures("isolated")

# The first Linear layer of the mlp (layers.0 is the Flatten) stays frozen, so the checkpoint
# has a non-empty frozen list to restore.
FREEZE = r"re:^layers\.1\."


@pytest.fixture(scope="module")
def trained(tmp_path_factory, _one_thread):
    """One real run on the digits, trained once for the whole module."""
    base = tmp_path_factory.mktemp("checkpoint-module")
    root = base / "checkpoints"
    config = TrainConfig(
        data=DataConfig("digits"),
        model=ModelConfig(arch="mlp", weights="none", freeze=FREEZE),
        run=RunConfig(epochs=2, out=str(root / "run"), workers=0),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(base)
        patch.setenv("TLCLI_CHECKPOINTS_DIR", str(root))
        patch.setenv("TLCLI_DATA_DIR", str(base / "data"))
        result = train(config)
    return {"base": base, "root": root, "run": result.run_dir, "config": config, "result": result}


@pytest.fixture
def checkpoints_dir(trained):
    """``isolated`` points TLCLI_CHECKPOINTS_DIR at the module's trained run."""
    return trained["root"]


def _one_sentence(message: str) -> None:
    assert message and "\n" not in message and "Traceback" not in message


# --- what a checkpoint holds -----------------------------------------------------------------


def test_checkpoint_loads_with_plain_torch_load_and_holds_every_design_field(trained):
    for name in ("best.pt", "last.pt"):
        checkpoint = torch.load(trained["run"] / name, weights_only=True)
        assert isinstance(checkpoint, dict)
        assert checkpoint["format"] == FORMAT == "tlcli.checkpoint"
        assert checkpoint["version"] == VERSION
        assert checkpoint["tlcli_version"] == tlcli.__version__
        assert checkpoint["torch_version"] == str(torch.__version__)
        assert isinstance(checkpoint["created"], str) and checkpoint["created"][:2] == "20"

    checkpoint = torch.load(trained["run"] / "last.pt", weights_only=True)
    model = checkpoint["model"]
    assert model["arch"] == "mlp" and model["num_classes"] == 10 and model["head"] == "layers.6"
    assert checkpoint["classes"] == [str(d) for d in range(10)]
    assert checkpoint["preprocess"]["input_size"] == 28 and checkpoint["preprocess"]["channels"] == 1
    assert checkpoint["freeze"]["policy"] == FREEZE
    assert checkpoint["freeze"]["frozen"] == ["layers.1.bias", "layers.1.weight"]
    assert checkpoint["phase"] == 1 and checkpoint["parent"] is None

    # Weights and the whole training state for --resume.
    state = checkpoint["state_dict"]
    assert set(state) == {f"layers.{i}.{kind}" for i in (1, 4, 6) for kind in ("weight", "bias")}
    assert all(isinstance(t, torch.Tensor) for t in state.values())
    assert state["layers.1.weight"].shape == (128, 784)
    assert checkpoint["optimizer"]["state"] and checkpoint["optimizer"]["param_groups"]
    assert checkpoint["scheduler"] is not None and "last_epoch" in checkpoint["scheduler"]
    assert isinstance(checkpoint["scaler"], dict)
    progress = checkpoint["progress"]
    assert progress["epoch"] == 2 and progress["best_epoch"] in (1, 2) and progress["step"] > 0
    assert [row["epoch"] for row in checkpoint["history"]] == [1, 2]
    assert all(0.0 <= row["val_acc"] <= 1.0 for row in checkpoint["history"])
    saved = TrainConfig.from_dict(checkpoint["config"])
    # The configuration as run: the default learning rate resolved to the one the optimiser used.
    assert saved.optim.lr == checkpoint["optimizer"]["param_groups"][0]["initial_lr"]
    assert saved == replace(trained["config"], optim=replace(trained["config"].optim, lr=saved.optim.lr))
    rng = checkpoint["rng"]
    assert {"python", "numpy", "torch"} <= set(rng) and isinstance(rng["torch"], torch.Tensor)

    # The data: source, how it was split (seed and per-split fingerprints) and the counts.
    data = checkpoint["data"]
    assert data["source"] == "digits"
    split = data["split"]
    assert split["seed"] == 42
    assert set(split["fingerprints"]) == {"train", "val", "test"}
    assert all(isinstance(v, str) and len(v) >= 8 for v in split["fingerprints"].values())
    rebuilt = load_data(DataConfig("digits"))
    assert split["fingerprints"] == rebuilt.split_info["fingerprints"]
    counts = data["counts"]
    assert {s: sum(c.values()) for s, c in counts.items()} == {s: len(rebuilt.splits[s]) for s in ("train", "val", "test")}
    assert sum(sum(c.values()) for c in counts.values()) == 1797  # every one of sklearn's digits


def test_best_holds_the_best_epochs_history(trained):
    best = torch.load(trained["run"] / "best.pt", weights_only=True)
    last = torch.load(trained["run"] / "last.pt", weights_only=True)
    assert best["history"][-1]["epoch"] == last["progress"]["best_epoch"]
    assert best["history"][-1]["val_loss"] == min(row["val_loss"] for row in last["history"])


# --- atomic writes ---------------------------------------------------------------------------


def test_a_failing_save_leaves_the_previous_file_byte_identical_and_no_temporary_files(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "model.pt"
    atomic_save({"weights": torch.arange(10.0)}, target)
    before = target.read_bytes()
    assert torch.equal(torch.load(target, weights_only=True)["weights"], torch.arange(10.0))

    # Big tensors come first in the dict, so the save is well under way when the lambda fails.
    with pytest.raises(Exception) as failure:
        atomic_save({"big": torch.randn(200_000), "broken": lambda: 1}, target)
    assert "pickle" in str(failure.value).lower() or "lambda" in str(failure.value)
    assert target.read_bytes() == before
    assert sorted(os.listdir(folder)) == ["model.pt"]

    # A successful save replaces the file.
    atomic_save({"weights": torch.ones(3)}, target)
    assert torch.equal(torch.load(target, weights_only=True)["weights"], torch.ones(3))
    assert sorted(os.listdir(folder)) == ["model.pt"]


@pytest.mark.parametrize("where", ["/proc/tlcli-test.pt", "/proc/no-such-folder/best.pt"])
def test_saving_where_nothing_can_be_written_is_one_checkpoint_error(where):
    with pytest.raises(CheckpointError) as failure:
        atomic_save({"x": torch.zeros(2)}, pathlib.Path(where))
    message = str(failure.value)
    _one_sentence(message)
    assert where in message and message.startswith("cannot write")
    assert not pathlib.Path(where).exists()


# --- files that are not good checkpoints -----------------------------------------------------


class _Anything:
    """A plain class: loading an instance of it needs pickled code."""

    def __init__(self):
        self.value = 3


class _RunsACommand:
    """Pickles as a call to os.system; unpickling it without restrictions runs the command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _real(trained) -> dict:
    return torch.load(trained["run"] / "best.pt", weights_only=True)


def _bad_file(kind: str, folder: pathlib.Path, trained) -> tuple[pathlib.Path, str]:
    """A bad checkpoint file of the given kind, and a fragment its error message must hold."""
    path = folder / "candidate.pt"
    if kind == "truncated":
        raw = (trained["run"] / "best.pt").read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
        return path, "truncated"
    if kind == "empty":
        path.write_bytes(b"")
        return path, "empty"
    if kind == "random":
        path.write_bytes(np.random.default_rng(7).integers(0, 256, 8192, dtype=np.uint8).tobytes())
        return path, "not a readable checkpoint"
    if kind == "pathlib":
        torch.save({"format": FORMAT, "where": pathlib.Path("x")}, path)
        return path, "pickled code"
    if kind == "instance":
        torch.save({"format": FORMAT, "thing": _Anything()}, path)
        return path, "pickled code"
    if kind == "os_system":
        torch.save({"state_dict": _RunsACommand(f"touch {folder / 'pwned'}")}, path)
        return path, "pickled code"
    if kind == "newer":
        checkpoint = _real(trained)
        checkpoint["version"] = VERSION + 1
        torch.save(checkpoint, path)
        return path, "newer"
    if kind == "no_version":
        checkpoint = _real(trained)
        del checkpoint["version"]
        torch.save(checkpoint, path)
        return path, "no valid checkpoint format version"
    if kind == "no_format":
        torch.save({"state_dict": {"w": torch.zeros(2)}, "classes": ["a", "b"]}, path)
        return path, "not a tlcli checkpoint"
    if kind == "incomplete":
        checkpoint = _real(trained)
        del checkpoint["classes"], checkpoint["preprocess"]
        torch.save(checkpoint, path)
        return path, "lacks classes, preprocess"
    if kind == "missing":
        return path, "does not exist"
    if kind == "text":
        path.write_text("epoch 3, val acc 0.91\n")
        return path, "not a readable checkpoint"
    if kind == "plain_pickle":  # protocol 4: torch warns about it on stderr unless told not to
        path.write_bytes(pickle.dumps({"format": FORMAT, "classes": ["a"]}, protocol=4))
        return path, "not a readable checkpoint"
    return _hostile_metadata(kind, path, _real(trained))


def _hostile_metadata(kind: str, path: pathlib.Path, checkpoint: dict) -> tuple[pathlib.Path, str]:
    """A well-formed checkpoint whose metadata would build a nonsensical or enormous model."""
    if kind == "negative_classes":
        checkpoint["model"]["num_classes"] = -5
        fragment = "model.num_classes -5"
    elif kind == "classes_mismatch":
        checkpoint["classes"] = checkpoint["classes"][:3]
        fragment = "classes is not a list of 10 names"
    elif kind == "huge_input":
        checkpoint["preprocess"]["input_size"] = 100_000
        fragment = "input_size 100000"
    elif kind == "bad_std":
        checkpoint["preprocess"]["std"] = [0.0]
        fragment = "std"
    elif kind == "huge_hidden":  # each bound holds, but the MLP they describe has 10^12 weights
        checkpoint["preprocess"].update(input_size=4096, resize_size=4096)
        checkpoint["model"]["hidden"] = [65_536, 64]
        fragment = "do not fit its architecture mlp"
    else:
        raise AssertionError(kind)
    torch.save(checkpoint, path)
    return path, fragment


BAD_KINDS = [
    "truncated", "empty", "random", "pathlib", "instance", "os_system", "newer", "no_version", "no_format", "incomplete", "missing",
    "text", "plain_pickle", "negative_classes", "classes_mismatch", "huge_input", "bad_std", "huge_hidden",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_load_checkpoint_turns_every_bad_file_into_one_clear_checkpoint_error(kind, tmp_path, trained):
    path, fragment = _bad_file(kind, tmp_path, trained)
    with pytest.raises(CheckpointError) as failure:
        model_from_checkpoint(load_checkpoint(path))
    message = str(failure.value)
    _one_sentence(message)
    # Rebuilding the model (huge_hidden) happens after loading, from a dict that no longer knows its file.
    assert (str(path) in message or kind == "huge_hidden") and fragment in message
    # Never the advice torch gives, to load it again with pickled code allowed.
    assert "weights_only" not in message and "False" not in message
    assert not (tmp_path / "pwned").exists()


def test_a_pickle_that_would_run_a_command_is_refused_without_running_it(tmp_path, trained):
    raw = tmp_path / "raw.pt"  # a bare protocol-0 pickle, not torch's zip format
    raw.write_bytes(b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned-raw").encode() + b"'\ntR.")
    zipped, _ = _bad_file("os_system", tmp_path, trained)
    for path in (raw, zipped):
        with pytest.raises(CheckpointError, match="pickled code"):
            load_checkpoint(path)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned-raw").exists()
    # The payloads are real: loading them with pickled code allowed does run the command.
    torch.load(zipped, weights_only=False)
    assert (tmp_path / "pwned").exists()


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_checkpoints_through_the_cli_are_one_error_line_and_exit_1(kind, tmp_path, trained, run_cli):
    path, fragment = _bad_file(kind, tmp_path, trained)
    if kind == "missing":  # the CLI looks for a file, a run folder and a run name
        fragment = "no checkpoint or run"
    image = write_image(tmp_path / "img.png")
    for args in (["evaluate", path], ["predict", image, "-c", path]):
        result = run_cli(*args)
        assert result.code == 1, (args, result.stdout, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        assert fragment in lines[0] and "Traceback" not in result.stderr and "unexpected" not in lines[0]
        assert result.stdout == ""
    assert not (tmp_path / "pwned").exists()


# --- rebuilding the model ----------------------------------------------------------------------


def test_model_from_checkpoint_reproduces_the_trained_models_outputs_and_freeze_state(trained):
    checkpoint = load_checkpoint(trained["run"] / "best.pt")
    built = model_from_checkpoint(checkpoint)
    model = built.model.eval()

    # Exactly the saved weights.
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, checkpoint["state_dict"][name]), name

    # The outputs are the trained model's: its validation loss and accuracy at the best epoch
    # are what the rebuilt model gets on the same validation images.
    data = load_data(DataConfig("digits"))
    transform = build_transform(built.preprocess)
    val = data.splits["val"]
    images = torch.stack([transform(val.load(i)) for i in range(len(val))])
    labels = torch.tensor(val.labels)
    with torch.no_grad():
        logits = model(images)
    recorded = checkpoint["history"][-1]
    assert nn.functional.cross_entropy(logits, labels).item() == pytest.approx(recorded["val_loss"], abs=1e-5)
    assert int((logits.argmax(1) == labels).sum()) == round(recorded["val_acc"] * len(val))

    # A freshly initialised network of the same architecture gives other outputs.
    fresh = build_model(ModelConfig(arch="mlp", weights="none"), num_classes=10, load_weights=False).model.eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(images), logits)

    # The freeze state comes back: the frozen parameters do not train, all the others do.
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == set(checkpoint["freeze"]["frozen"]) == {"layers.1.weight", "layers.1.bias"}
    assert all(p.requires_grad for name, p in model.named_parameters() if name not in frozen)
    assert built.freeze_policy == FREEZE
    assert built.preprocess.to_dict() == checkpoint["preprocess"]


def test_weights_that_do_not_fit_the_architecture_are_a_checkpoint_error(trained):
    checkpoint = load_checkpoint(trained["run"] / "best.pt")
    checkpoint["state_dict"]["layers.6.weight"] = torch.zeros(3, 64)
    with pytest.raises(CheckpointError, match="do not fit") as failure:
        model_from_checkpoint(checkpoint)
    _one_sentence(str(failure.value))


# --- finding a checkpoint again ------------------------------------------------------------------


def test_resolve_a_file_a_run_folder_a_run_name_and_the_latest_run(trained, tmp_path):
    run, root = trained["run"], trained["root"]
    assert resolve_checkpoint(str(run / "last.pt")) == run / "last.pt"
    assert resolve_checkpoint(str(run)) == run / "best.pt"  # a run folder: best.pt first
    assert resolve_checkpoint(str(run), prefer="last.pt") == run / "last.pt"
    assert resolve_checkpoint("run") == root / "run" / "best.pt"  # a name under the checkpoints root
    assert resolve_checkpoint(None) == root / "run" / "best.pt"  # follows the latest pointer
    assert (root / "latest").is_symlink()

    # A folder with only last.pt (an interrupted first epoch) gives that.
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(run / "last.pt", partial / "last.pt")
    assert resolve_checkpoint(str(partial)) == partial / "last.pt"


def test_no_argument_follows_where_latest_points(trained, tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    root.mkdir()
    monkeypatch.setenv("TLCLI_CHECKPOINTS_DIR", str(root))
    with pytest.raises(CheckpointError, match="no run yet") as failure:
        resolve_checkpoint(None)
    _one_sentence(str(failure.value))
    for name in ("first", "second"):
        shutil.copytree(trained["run"], root / name)
    (root / "latest").symlink_to("first")
    assert resolve_checkpoint(None) == root / "first" / "best.pt"
    (root / "latest").unlink()
    (root / "latest").symlink_to("second")
    assert resolve_checkpoint(None) == root / "second" / "best.pt"
    assert load_checkpoint(resolve_checkpoint(None))["format"] == FORMAT


def test_what_does_not_exist_is_a_checkpoint_error(trained, tmp_path):
    for spec in ("no-such-run", str(tmp_path / "nowhere.pt")):
        with pytest.raises(CheckpointError, match="no checkpoint or run") as failure:
            resolve_checkpoint(spec)
        _one_sentence(str(failure.value))
        assert spec in str(failure.value)
    empty = tmp_path / "empty-run"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="holds no best.pt or last.pt"):
        resolve_checkpoint(str(empty))

