"""``import tlcli``: the command line's verbs as functions, with its options as keyword arguments."""

from __future__ import annotations

import inspect
import json
import pydoc
import re

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

import tlcli
from tests.helpers import working_in
from tlcli.api.options import TRAIN_DEFAULTS

pytestmark = pytest.mark.usefixtures("isolated")

VERBS = ("train", "finetune", "evaluate", "predict", "export", "summary", "compare")


@pytest.fixture(scope="module")
def phase1(tmp_path_factory, _one_thread):
    """An mlp fitted on the real digits through the API, quietly, once for the module."""
    root = tmp_path_factory.mktemp("api")
    with working_in(root):
        return tlcli.train("digits", arch="mlp", weights="none", epochs=3, workers=0, out=root / "phase1", progress=False)  # a Path, too


def test_help_lists_every_verb_with_its_docstring():
    text = pydoc.render_doc(tlcli, renderer=pydoc.plaintext)
    for verb in VERBS:
        first_line = inspect.getdoc(getattr(tlcli, verb)).splitlines()[0]
        assert verb in tlcli.__all__ and first_line in " ".join(text.split())


def test_train_lists_every_train_option_with_the_command_line_default():
    parameters = inspect.signature(tlcli.train).parameters
    assert {name: parameters[name].default for name in TRAIN_DEFAULTS} == TRAIN_DEFAULTS
    assert parameters["hidden"].default == (128, 64) and parameters["epochs"].default == 10


@pytest.mark.parametrize(("options", "message"), [
    ({"optimiser": "sgd"}, "unknown option 'optimiser' (did you mean optimizer?)"),
    ({"epochs": "3"}, "epochs takes int, got '3'"),
    ({"lr": True}, "lr takes float or None, got True"),
    ({"optimizer": "adagrad"}, "unknown optimizer 'adagrad'; choose one of adam, adamw, sgd, rmsprop"),
    ({"freeze": "last:x"}, "freeze policy 'last:x' needs a whole number"),
    ({"hidden": "64,x"}, "hidden takes comma-separated whole numbers"),
    ({"batch_size": 0}, "batch size must be at least 1, got 0"),
    ({"dropout": 1.5}, "dropout must be from 0.0 to 0.99, got 1.5"),
    ({"device": "gpu"}, "unknown device 'gpu'"),
])
def test_a_bad_option_is_a_config_error_before_any_data_is_read(options, message):
    with pytest.raises(tlcli.ConfigError, match=re.escape(message)):
        tlcli.train("no/such/folder", progress=False, **options)


def test_an_empty_data_source_is_a_config_error():
    with pytest.raises(tlcli.ConfigError, match="data names no data set"):
        tlcli.train(" ", progress=False)


def test_the_two_phases_evaluate_predict_and_export_from_python(phase1, tmp_path, capsys):
    assert phase1.history[-1]["val_acc"] > 0.8  # it learned: 10 classes, chance is 0.1
    assert repr(phase1).startswith(f"RunResult('{phase1.run_dir}', phase 1, 3 epochs, best val_loss ")
    phase2 = tlcli.finetune(phase1.run_dir, epochs=1, lr=1e-3, hflip=False, batch_size=None, out=tmp_path / "phase2", progress=False)
    assert phase2.phase == 2 and phase2.history[0] == phase1.history[0]
    assert capsys.readouterr().err == ""  # progress=False: nothing on stderr

    result = tlcli.evaluate(phase2.run_dir, out=tmp_path / "eval")
    assert result.metrics.accuracy > 0.8 and (tmp_path / "eval" / "metrics.json").exists()
    assert json.loads(json.dumps(result.to_dict(), default=str))["accuracy"] == result.metrics.accuracy
    assert "accuracy" in repr(result) and str(phase2.run_dir) in repr(result)

    exported = tlcli.export(phase2.run_dir, format="torchscript", out=tmp_path / "model.pt")
    assert exported.passed and (tmp_path / "model.pt").exists() and "parity pass" in repr(exported)
    overview = tlcli.summary(phase2.run_dir)
    assert overview.num_classes == 10 and "Total params" in str(overview)


def test_images_in_memory_are_classified_as_the_same_images_on_disk(phase1, tmp_path):
    digits = load_digits()
    arrays = [np.rint(digits.images[i] * 255 / 16).astype(np.uint8) for i in range(30)]  # as the built-in set makes them
    files = []
    for i, array in enumerate(arrays):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(array).save(files[-1])
    from_files = tlcli.predict([str(path) for path in files], checkpoint=phase1.run_dir, topk=3, workers=0)
    from_pil = tlcli.predict([Image.fromarray(array) for array in arrays], checkpoint=phase1.run_dir, topk=3)
    from_tensors = tlcli.predict([torch.from_numpy(array).unsqueeze(0) for array in arrays], checkpoint=phase1.run_dir, topk=3)
    for on_disk, *in_memory in zip(from_files, from_pil, from_tensors):
        for other in in_memory:
            assert [label for label, _ in other.top] == [label for label, _ in on_disk.top]
            assert [p for _, p in other.top] == pytest.approx([p for _, p in on_disk.top], abs=1e-5)
    assert sum(p.label == str(t) for p, t in zip(from_files, digits.target)) >= 24  # it learned: 80 %, chance is 10 %
    assert from_pil[0].path == "<image 0>" and repr(from_pil).startswith("Predictions([<image 0>: ")


def test_predict_writes_an_output_file_instead_of_keeping_rows(phase1, tmp_path):
    image = tmp_path / "digit.png"
    Image.fromarray((load_digits().images[0] * 255 / 16).astype(np.uint8)).save(image)
    kept = tlcli.predict(image, checkpoint=phase1.run_dir, output=tmp_path / "out.jsonl", workers=0)
    assert list(kept) == [] and kept.summary.images == 1
    assert json.loads((tmp_path / "out.jsonl").read_text())["path"] == str(image)
    with pytest.raises(tlcli.ConfigError, match="not both"):
        tlcli.predict([str(image), Image.open(image)], checkpoint=phase1.run_dir)
    with pytest.raises(tlcli.ConfigError, match="not both"):
        tlcli.predict(image, checkpoint=phase1.run_dir, model=tmp_path / "model.onnx")
    with pytest.raises(tlcli.ConfigError, match="resume continues an output file"):
        tlcli.predict(image, checkpoint=phase1.run_dir, resume=True)


def test_resume_continues_a_run_and_refuses_other_options(phase1, tmp_path):
    with pytest.raises(tlcli.ConfigError, match="only epochs may change, not arch"):
        tlcli.train(resume=str(phase1.run_dir / "last.pt"), arch="simple_cnn")
    with pytest.raises(tlcli.ConfigError, match="only epochs may change, not lr"):
        tlcli.finetune(phase1.run_dir, resume=str(phase1.run_dir / "last.pt"), lr=0.1)


def test_compare_trains_each_run_on_the_shared_options(tmp_path):
    study = tlcli.compare({"mlp-32": {"hidden": (32,)}, "mlp-64": {"hidden": "64"}}, data="digits", arch="mlp", weights="none",
                          epochs=1, workers=0, out=tmp_path / "study", progress=False)
    assert [row["name"] for row in study.table] == ["mlp-32", "mlp-64"]
    assert all(row["best_val_acc"] > 0.5 for row in study.table) and "2 configurations" in repr(study)
    with pytest.raises(tlcli.ConfigError, match="cannot be set per run"):
        tlcli.compare({"a": {"out": "x"}}, data="digits")


@pytest.mark.parametrize("command", ["evaluate", "predict", "export", "summary", "finetune"])
def test_each_command_takes_its_defaults_from_the_api(command):
    import typer

    from tlcli.cli import app

    api_defaults = {name: p.default for name, p in inspect.signature(getattr(tlcli, command)).parameters.items()
                    if p.default is not inspect.Parameter.empty}
    click_command = typer.main.get_command(app).commands[command]
    shared = {param.name: param.default for param in click_command.params if param.name in api_defaults}
    assert len(shared) >= 2
    assert shared == {name: api_defaults[name] for name in shared}
