"""``tlcli evaluate`` and ``tlcli predict`` on a real trained run, through the command line."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tlcli.cli import main
from tlcli.core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from tlcli.data.sources import load_data

from tests.helpers import make_class_folder, train, working_in, write_image

pytestmark = pytest.mark.usefixtures("isolated")

CLASSES = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory, _one_thread):
    """The mlp trained for 3 epochs on sklearn's real digits, once for the module; it is the latest run."""
    base = tmp_path_factory.mktemp("evaluate-predict")
    root = base / "checkpoints"
    with working_in(base, checkpoints=root):
        result = train(
            TrainConfig(model=ModelConfig(arch="mlp", weights="none"), run=RunConfig(epochs=3, out=str(root / "digits"), workers=0))
        )
    return {"base": base, "root": root, "run": result.run_dir}


@pytest.fixture(scope="module")
def folder_run(digits_run):
    """An mlp trained from the command line on a small folder of real PNGs (3 classes)."""
    base = digits_run["base"] / "folder"
    data = make_class_folder(base / "animals", {"cat": 10, "dog": 10, "fox": 10})
    out = base / "runs" / "animals"
    with working_in(base, checkpoints=base / "runs"):  # its own checkpoints folder: the digits run stays the latest
        code = main(["train", "--data", str(data), "--arch", "mlp", "--weights", "none", "--epochs", "1",
                     "--out", str(out), "--workers", "0"])
    assert code == 0
    return {"base": base, "data": data, "run": out}


@pytest.fixture
def checkpoints_dir(digits_run):
    """``isolated`` points TLCLI_CHECKPOINTS_DIR at the module's runs: the digits run is the latest."""
    return digits_run["root"]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


def _checkpoint(run: Path) -> dict:
    return torch.load(run / "best.pt", weights_only=True)


# --- evaluate ----------------------------------------------------------------------------------


def test_evaluate_reports_every_metric_consistently_and_writes_its_files(digits_run, run_cli):
    run = digits_run["run"]
    result = run_cli("evaluate", run, "--json")
    assert result.code == 0, result.stderr
    report = result.json()
    checkpoint = _checkpoint(run)
    test_size = sum(checkpoint["data"]["counts"]["test"].values())

    assert report["checkpoint"] == str(run / "best.pt") and report["split"] == "test" and report["data"] == "digits"
    assert report["images"] == test_size
    assert 0.0 < report["loss"] < 1.0
    assert report["accuracy"] > 0.85  # the mlp after 3 epochs on the digits

    matrix = np.array(report["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == report["images"]
    assert report["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum(), abs=1e-12)
    assert report["topk_accuracy"]["1"] == pytest.approx(report["accuracy"])
    assert report["accuracy"] <= report["topk_accuracy"]["5"] <= 1.0

    rows = report["per_class"]
    assert [row["class"] for row in rows] == CLASSES
    assert sum(row["support"] for row in rows) == test_size
    assert [row["support"] for row in rows] == matrix.sum(axis=1).tolist()
    assert [row["support"] for row in rows] == [checkpoint["data"]["counts"]["test"][c] for c in CLASSES]
    for i, row in enumerate(rows):
        assert row["recall"] == pytest.approx(matrix[i, i] / matrix[i].sum())
        if matrix[:, i].sum():
            assert row["precision"] == pytest.approx(matrix[i, i] / matrix[:, i].sum())
    assert report["precision_macro"] == pytest.approx(np.mean([row["precision"] for row in rows]))
    assert report["recall_macro"] == pytest.approx(np.mean([row["recall"] for row in rows]))
    assert report["f1_macro"] == pytest.approx(np.mean([row["f1"] for row in rows]))
    supports = np.array([row["support"] for row in rows])
    assert report["precision_weighted"] == pytest.approx(np.dot([row["precision"] for row in rows], supports) / supports.sum())
    assert report["f1_weighted"] == pytest.approx(np.dot([row["f1"] for row in rows], supports) / supports.sum())
    assert report["recall_weighted"] == pytest.approx(report["accuracy"])  # support-weighted recall is accuracy

    fit = report["fit"]
    last = checkpoint["history"][-1]
    assert fit["train_acc"] == last["train_acc"] and fit["val_acc"] == last["val_acc"]
    assert fit["gap"] == pytest.approx(fit["train_acc"] - fit["val_acc"])
    assert fit["verdict"] in ("over-fitting", "under-fitting", "balanced")
    if fit["train_acc"] >= 0.6 and fit["gap"] <= 0.1:
        assert fit["verdict"] == "balanced"

    mistakes = report["most_confident_mistakes"]
    assert len(mistakes) == min(10, int(matrix.sum() - np.trace(matrix)))
    confidences = [m["confidence"] for m in mistakes]
    assert confidences == sorted(confidences, reverse=True)
    assert all(m["true"] != m["predicted"] and 0.0 < m["confidence"] <= 1.0 for m in mistakes)
    assert all(m["true"] in CLASSES and m["predicted"] in CLASSES and m["image"].startswith("digits/") for m in mistakes)
    assert all(matrix[int(m["true"]), int(m["predicted"])] > 0 for m in mistakes)

    files = report["files"]
    assert set(files) == {"confusion_matrix.png", "confusion_matrix_normalized.png", "confusion_matrix.csv", "metrics.json"}
    assert Path(files["metrics.json"]).parent == run / "eval-test"
    for name in ("confusion_matrix.png", "confusion_matrix_normalized.png"):
        with Image.open(files[name]) as image:
            image.load()
            assert image.format == "PNG" and image.width > 100 and image.height > 100
    with open(files["confusion_matrix.csv"], newline="") as stream:
        table = list(csv.reader(stream))
    assert table[0][1:] == CLASSES and [row[0] for row in table[1:]] == CLASSES
    assert [[int(v) for v in row[1:]] for row in table[1:]] == report["confusion_matrix"]
    assert json.loads(Path(files["metrics.json"]).read_text()) == report

    # The checkpoint's split is rebuilt exactly: nothing to warn about.
    assert report["notes"] == [] and "differ" not in result.stderr


def test_evaluating_twice_gives_identical_numbers(digits_run, run_cli):
    first = run_cli("evaluate", digits_run["run"], "--json")
    second = run_cli("evaluate", digits_run["run"], "--json")
    assert first.code == second.code == 0
    assert first.json() == second.json()


def test_the_val_split_is_the_one_training_validated_on(digits_run, run_cli, tmp_path):
    result = run_cli("evaluate", digits_run["run"], "--split", "val", "--json", "--out", tmp_path / "eval")
    assert result.code == 0, result.stderr
    report = result.json()
    checkpoint = _checkpoint(digits_run["run"])
    assert report["split"] == "val"
    assert report["images"] == sum(checkpoint["data"]["counts"]["val"].values())
    # best.pt was written at its best epoch: evaluate reproduces that epoch's validation pass.
    best = checkpoint["history"][-1]
    assert report["loss"] == pytest.approx(best["val_loss"], abs=1e-5)
    assert report["accuracy"] == pytest.approx(best["val_acc"], abs=1e-9)
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == [
        "confusion_matrix.csv", "confusion_matrix.png", "confusion_matrix_normalized.png", "metrics.json"
    ]


def test_evaluate_as_a_table(digits_run, run_cli):
    result = run_cli("evaluate", digits_run["run"])
    assert result.code == 0, result.stderr
    report = json.loads((digits_run["run"] / "eval-test" / "metrics.json").read_text())
    assert f"accuracy {report['accuracy']:.4f}" in result.stdout
    assert "per class" in result.stdout and "most confident mistakes" in result.stdout
    assert f"gap at epoch {report['fit']['epoch']}" in result.stdout and report["fit"]["verdict"] in result.stdout


def test_evaluate_notes_that_the_files_changed_since_training(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TLCLI_CHECKPOINTS_DIR", str(tmp_path / "runs"))  # its own checkpoints folder: the digits run stays the latest
    data = make_class_folder(tmp_path / "shapes", {"a": 10, "b": 10, "c": 10})
    trained = run_cli("train", "--data", data, "--arch", "mlp", "--weights", "none", "--epochs", "1",
                      "--out", tmp_path / "runs" / "shapes", "--workers", "0")
    assert trained.code == 0, trained.stderr
    run = tmp_path / "runs" / "shapes"
    before = run_cli("evaluate", run, "--json")
    assert before.code == 0 and before.json()["notes"] == [] and "differ" not in before.stderr

    added = write_image(data / "b" / "added.png", seed=999)
    config = TrainConfig.from_dict(_checkpoint(run)["config"]).data
    now = load_data(config)
    split = next(s for s, images in now.splits.items() if any(images.name(i) == str(added) for i in range(len(images))))

    after = run_cli("evaluate", run, "--split", split, "--json")
    assert after.code == 0, after.stderr
    assert any(f"the {split} files differ from those at training time" in note for note in after.json()["notes"])
    assert "Warning:" in after.stderr and "differ" in after.stderr


def test_data_with_a_class_the_checkpoint_does_not_know_is_an_error_naming_it(folder_run, run_cli, tmp_path):
    other = make_class_folder(tmp_path / "zoo", {"cat": 10, "dog": 10, "zebra": 10})
    result = run_cli("evaluate", folder_run["run"], "--data", other)
    assert result.code == 1
    errors = _error_lines(result.stderr)
    assert len(errors) == 1 and "zebra" in errors[0] and "does not know" in errors[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_a_subset_of_the_classes_is_mapped_by_name(folder_run, run_cli, tmp_path):
    # Here dog and fox are classes 0 and 1; in the checkpoint they are 1 and 2 (cat is 0).
    subset = tmp_path / "subset"
    seed = 500
    for split, counts in (("train", {"dog": 2, "fox": 2}), ("test", {"dog": 3, "fox": 2})):
        for name, count in counts.items():
            for i in range(count):
                seed += 1
                write_image(subset / split / name / f"{i}.png", seed=seed)
    result = run_cli("evaluate", folder_run["run"], "--data", subset, "--json")
    assert result.code == 0, result.stderr
    report = result.json()
    assert report["images"] == 5
    assert [(row["class"], row["support"]) for row in report["per_class"]] == [("cat", 0), ("dog", 3), ("fox", 2)]
    matrix = np.array(report["confusion_matrix"])
    assert matrix.sum(axis=1).tolist() == [0, 3, 2]

    # predict sees the same files: its top-1 labels against the folder names give the same matrix.
    predicted = run_cli("predict", subset / "test", "-c", folder_run["run"], "--json")
    assert predicted.code == 0, predicted.stderr
    expected = np.zeros((3, 3), dtype=int)
    index = {"cat": 0, "dog": 1, "fox": 2}
    for item in predicted.json():
        expected[index[Path(item["path"]).parent.name], index[item["predictions"][0]["label"]]] += 1
    assert matrix.tolist() == expected.tolist()
    assert report["accuracy"] == pytest.approx(np.trace(expected) / 5)


def test_evaluating_other_data_writes_its_own_folder_and_keeps_the_runs(folder_run, run_cli, tmp_path):
    run = folder_run["run"]
    own = run_cli("evaluate", run, "--json")
    assert own.code == 0, own.stderr
    assert own.json()["folder"] == str(run / "eval-test")
    kept = (run / "eval-test" / "metrics.json").read_bytes()

    zoo = make_class_folder(tmp_path / "my zoo", {"cat": 10, "dog": 10, "fox": 10})
    other = run_cli("evaluate", run, "--data", zoo)
    assert other.code == 0, other.stderr
    folder = run / "eval-my_zoo-test"
    assert f"written to {folder}: confusion_matrix.png, confusion_matrix_normalized.png, confusion_matrix.csv, metrics.json" in other.stdout
    assert json.loads((folder / "metrics.json").read_text())["data"] == str(zoo)
    assert (run / "eval-test" / "metrics.json").read_bytes() == kept

    # The training data spelled another way is still the run's own: its split, its folder.
    same = run_cli("evaluate", run, "--data", f"{folder_run['data']}/", "--json")
    assert same.code == 0, same.stderr
    assert same.json()["folder"] == str(run / "eval-test")
    assert same.json()["accuracy"] == own.json()["accuracy"] and same.json()["images"] == own.json()["images"]


# --- predict -------------------------------------------------------------------------------------


def _digit(index: int = 0) -> Image.Image:
    """A real handwritten digit from the test split, as tlcli decodes it (8x8, mode L)."""
    return load_data(DataConfig("digits")).splits["test"].load(index)


def _image_files(folder: Path) -> dict[str, Path]:
    """One digit written in many modes and formats; the lossless ones hold exactly its pixels."""
    folder.mkdir(parents=True)
    digit = _digit(3)
    pixels = np.asarray(digit)
    files = {}
    files["gray"] = folder / "gray.png"
    digit.save(files["gray"])
    files["rgb"] = folder / "rgb.png"
    digit.convert("RGB").save(files["rgb"])
    files["rgba"] = folder / "rgba.png"
    rgba = digit.convert("RGBA")
    rgba.putalpha(255)
    rgba.save(files["rgba"])
    files["palette"] = folder / "palette.png"
    palette = Image.fromarray(pixels, "P")
    palette.putpalette([v for i in range(256) for v in (i, i, i)])
    palette.save(files["palette"])
    files["deep"] = folder / "deep.png"
    deep = Image.fromarray(pixels.astype(np.uint16) * 257)
    assert deep.mode.startswith("I;16")
    deep.save(files["deep"])
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter left; shown turned back
    files["exif_png"] = folder / "exif.png"
    digit.transpose(Image.Transpose.ROTATE_90).save(files["exif_png"], exif=exif)
    # JPEGs of the digit blown up 8x, so each 8x8 JPEG block is one flat pixel of it.
    large = digit.resize((64, 64), Image.Resampling.NEAREST)
    files["jpg"] = folder / "upright.jpg"
    large.save(files["jpg"], quality=95)
    files["exif_jpg"] = folder / "exif.jpg"
    large.transpose(Image.Transpose.ROTATE_90).save(files["exif_jpg"], exif=exif, quality=95)
    files["cmyk"] = folder / "cmyk.jpg"
    large.convert("CMYK").save(files["cmyk"], quality=95)
    return files


def test_predict_images_of_every_mode_folders_and_globs(digits_run, run_cli, tmp_path):
    files = _image_files(tmp_path / "images")
    with Image.open(files["cmyk"]) as image:
        assert image.mode == "CMYK"
    table = run_cli("predict", *files.values())
    assert table.code == 0, table.stderr
    for path in files.values():
        assert path.name in table.stdout
    assert _error_lines(table.stderr) == []

    result = run_cli("predict", *files.values(), "--topk", "3", "--json")
    assert result.code == 0, result.stderr
    items = result.json()
    assert [item["path"] for item in items] == [str(p) for p in files.values()]
    for item in items:
        assert item["error"] is None
        probabilities = [p["probability"] for p in item["predictions"]]
        assert len(probabilities) == 3
        assert probabilities == sorted(probabilities, reverse=True)
        assert 0.0 < sum(probabilities) <= 1.0 + 1e-6
        assert len({p["label"] for p in item["predictions"]}) == 3 and all(p["label"] in CLASSES for p in item["predictions"])
    by_name = {Path(item["path"]).name: item["predictions"] for item in items}
    # The same pixels in another mode, bit depth or orientation give the same prediction.
    reference = by_name["gray.png"]
    for name in ("rgb.png", "rgba.png", "palette.png", "deep.png", "exif.png"):
        assert [p["label"] for p in by_name[name]] == [p["label"] for p in reference], name
        assert [p["probability"] for p in by_name[name]] == pytest.approx([p["probability"] for p in reference], abs=1e-6), name
    # Ignoring the EXIF orientation would show the model a digit on its side, and change what it says.
    _digit(3).transpose(Image.Transpose.ROTATE_90).save(tmp_path / "sideways.png")
    sideways = run_cli("predict", tmp_path / "sideways.png", "--json")
    assert sideways.code == 0
    def rounded(predictions):
        return [(p["label"], round(p["probability"], 3)) for p in predictions[:3]]

    assert rounded(sideways.json()[0]["predictions"]) != rounded(reference)
    # JPEG is lossy, but the rotated, the CMYK and the upright JPEG of the same digit agree closely.
    for name in ("exif.jpg", "cmyk.jpg"):
        assert [p["label"] for p in by_name[name]] == [p["label"] for p in by_name["upright.jpg"]], name
        assert [p["probability"] for p in by_name[name]] == pytest.approx(
            [p["probability"] for p in by_name["upright.jpg"]], abs=0.02
        ), name

    folder = run_cli("predict", tmp_path / "images", "--topk", "2", "--json")
    assert folder.code == 0
    assert [item["path"] for item in folder.json()] == sorted(str(p) for p in files.values())
    pattern = run_cli("predict", str(tmp_path / "images" / "*.png"), "--topk", "2", "--json")
    assert pattern.code == 0
    assert [item["path"] for item in pattern.json()] == sorted(str(p) for p in files.values() if p.suffix == ".png")
    assert all(len(item["predictions"]) == 2 for item in pattern.json())


def test_predict_csv_parses(digits_run, run_cli, tmp_path):
    files = [write_image(tmp_path / f"{i}.png", seed=i) for i in range(3)]
    result = run_cli("predict", *files, "--topk", "4", "--csv")
    assert result.code == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["path", "rank", "label", "probability", "error"]
    assert len(rows) == 1 + 3 * 4
    for path in files:
        mine = [row for row in rows[1:] if row[0] == str(path)]
        assert [int(row[1]) for row in mine] == [1, 2, 3, 4]
        probabilities = [float(row[3]) for row in mine]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0 + 1e-5
        assert all(row[2] in CLASSES and row[4] == "" for row in mine)


def test_predict_csv_and_json_both_list_unreadable_files_with_their_error(digits_run, run_cli, tmp_path):
    good = write_image(tmp_path / "good.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    missing = tmp_path / "missing.png"
    as_json = run_cli("predict", good, broken, missing, "--json")
    as_csv = run_cli("predict", good, broken, missing, "--csv")
    assert as_json.code == as_csv.code == 3
    assert _error_lines(as_json.stderr) == _error_lines(as_csv.stderr) and len(_error_lines(as_csv.stderr)) == 2
    json_errors = {item["path"]: item["error"] for item in as_json.json() if item["error"]}
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    csv_errors = {row["path"]: row["error"] for row in rows if row["error"]}
    assert csv_errors == json_errors and set(csv_errors) == {str(broken), str(missing)}
    for path in (broken, missing):
        (row,) = [row for row in rows if row["path"] == str(path)]
        assert row["rank"] == row["label"] == row["probability"] == ""
    assert [int(row["rank"]) for row in rows if row["path"] == str(good)] == [1, 2, 3, 4, 5]


def test_predict_with_nothing_to_classify_is_one_error_before_the_model_loads(digits_run, run_cli, tmp_path):
    (tmp_path / "empty").mkdir()
    pattern = str(tmp_path / "*.png")
    for args, reason in (
        ([pattern], f"{pattern}: no file matches this pattern"),
        ([tmp_path / "empty", "--json"], f"{tmp_path / 'empty'}: no image files in this folder"),
        ([pattern, tmp_path / "gone.png", "--csv"], f"{pattern}: no file matches this pattern; {tmp_path / 'gone.png'}: no such file or folder"),
    ):
        # A checkpoint that does not exist: the inputs are checked first.
        result = run_cli("predict", *args, "-c", tmp_path / "no-such-run")
        assert result.code == 1 and result.stdout == ""
        assert result.stderr.splitlines() == [f"Error: no images to predict: {reason}"]


def test_topk_beyond_the_classes_is_clamped(digits_run, run_cli, tmp_path):
    image = write_image(tmp_path / "x.png")
    table = run_cli("predict", image, "--topk", "15")
    assert table.code == 0, table.stderr
    assert "#10" in table.stdout and "#11" not in table.stdout
    as_json = run_cli("predict", image, "--topk", "15", "--json")
    assert len(as_json.json()[0]["predictions"]) == len(CLASSES)


def test_unreadable_and_missing_files_are_reported_and_the_rest_predicted(digits_run, run_cli, tmp_path):
    good = [write_image(tmp_path / "in" / f"good{i}.png", seed=i) for i in range(2)]
    broken = tmp_path / "in" / "broken.png"
    broken.write_bytes(b"this is not a png at all")
    missing = tmp_path / "nowhere.png"
    result = run_cli("predict", good[0], broken, good[1], missing, "--json")
    assert result.code == 3
    items = {item["path"]: item for item in result.json()}
    assert set(items) == {str(good[0]), str(good[1]), str(broken), str(missing)}
    for path in good:
        assert items[str(path)]["error"] is None and len(items[str(path)]["predictions"]) == 5
    for path in (broken, missing):
        assert items[str(path)]["predictions"] == [] and items[str(path)]["error"]
    errors = _error_lines(result.stderr)
    assert len(errors) == 2
    assert any(str(broken) in line for line in errors) and any(str(missing) in line and "no such file" in line for line in errors)
    assert "Traceback" not in result.stderr

    # A folder holding the broken file, as a table: the good images are still in it.
    table = run_cli("predict", tmp_path / "in")
    assert table.code == 3
    assert "good0.png" in table.stdout and "good1.png" in table.stdout
    errors = _error_lines(table.stderr)
    assert len(errors) == 1 and str(broken) in errors[0]

    # A folder without a single image is reported too, not passed over in silence.
    (tmp_path / "no-images").mkdir()
    (tmp_path / "no-images" / "notes.txt").write_text("not an image")
    empty = run_cli("predict", good[0], tmp_path / "no-images", "--json")
    assert empty.code == 3 and len(empty.json()) == 2
    assert _error_lines(empty.stderr) == [f"Error: {tmp_path / 'no-images'}: no image files in this folder"]


def test_predict_without_checkpoint_uses_the_latest_run_and_says_so(digits_run, run_cli, tmp_path):
    image = write_image(tmp_path / "x.png")
    result = run_cli("predict", image, "--json")
    assert result.code == 0, result.stderr
    assert f"checkpoint: {digits_run['run'] / 'best.pt'}" in result.stderr
    explicit = run_cli("predict", image, "--json", "-c", digits_run["run"] / "best.pt")
    assert explicit.json() == result.json()


def test_predict_recognises_exported_digits(digits_run, run_cli, tmp_path):
    exported = run_cli("data", "export", "digits", tmp_path / "digits", "--limit", "2")
    assert exported.code == 0, exported.stderr
    result = run_cli("predict", tmp_path / "digits", "-c", digits_run["run"], "--json")
    assert result.code == 0, result.stderr
    items = result.json()
    assert len(items) == 3 * 10 * 2  # 2 images per split and class
    right = sum(item["predictions"][0]["label"] == Path(item["path"]).parent.name for item in items)
    assert right / len(items) >= 0.8
