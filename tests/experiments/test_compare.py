"""Studies: compare and k-fold produce the reports' tables and figures, and resume when cut off."""

from __future__ import annotations

import json

import pytest

from tlcli.core.config import DataConfig
from tlcli.data.sources import load_data

from tests.helpers import make_class_folder

pytestmark = pytest.mark.usefixtures("isolated")

FIGURES = ("accuracy.png", "loss.png", "overfitting_gap.png", "convergence.png", "params_vs_time.png", "test_accuracy.png")


def test_folds_partition_train_and_val_and_keep_test():
    plain = load_data(DataConfig("digits"))
    pool = {plain.splits[s].key(i) for s in ("train", "val") for i in range(len(plain.splits[s]))}
    seen_val = []
    for fold in range(3):
        data = load_data(DataConfig("digits", folds=3, fold=fold))
        train = {data.splits["train"].key(i) for i in range(len(data.splits["train"]))}
        val = {data.splits["val"].key(i) for i in range(len(data.splits["val"]))}
        assert train | val == pool and not train & val
        assert data.split_info["fingerprints"]["test"] == plain.split_info["fingerprints"]["test"]
        per_class = plain.class_counts()
        for name, count in data.class_counts()["val"].items():  # stratified: a third of each class
            assert abs(count - (per_class["train"][name] + per_class["val"][name]) / 3) <= 1
        seen_val.append(val)
    assert set().union(*seen_val) == pool and sum(len(v) for v in seen_val) == len(pool)


def test_an_interrupted_study_resumes_the_cut_run(run_cli, tmp_path):
    from tlcli.core.config import ModelConfig, RunConfig, TrainConfig
    from tlcli.engine.loop import Observer
    from tlcli.experiments.compare import run_study

    class Stop(Observer):
        def epoch_end(self, row):
            if row["epoch"] == 1:
                raise KeyboardInterrupt

    configs = [(name, TrainConfig(data=DataConfig("digits"), model=ModelConfig(arch=name, weights="none"), run=RunConfig(epochs=2, workers=0)))
               for name in ("mlp", "simple_cnn")]
    with pytest.raises(KeyboardInterrupt):
        run_study(configs, tmp_path / "cut", observer_for=lambda label: Stop() if label == "simple_cnn" else Observer())
    result = run_study(configs, tmp_path / "cut")
    assert result.skipped == ["mlp"]
    assert [row["epochs_run"] for row in result.table] == [2, 2]


def test_train_folds_reports_every_fold_and_the_mean(run_cli):
    result = run_cli("train", "--arch", "mlp", "--epochs", "1", "--folds", "3", "--out", "kfold", "--json")
    assert result.code == 0, result.stderr
    document = result.json()
    folds = [run for run in document["runs"]]
    assert [run["fold"] for run in folds] == [0, 1, 2]
    mean = document["table"][0]
    assert mean["folds"] == 3
    assert mean["best_val_acc"] == pytest.approx(sum(r["best_val_acc"] for r in folds) / 3)
    assert mean["best_val_acc_std"] > 0
    table = run_cli("train", "--arch", "mlp", "--epochs", "1", "--folds", "3", "--out", "kfold")
    assert "mean ± std" in table.stdout and "fold 3" in table.stdout


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["compare"], 2, "nothing to compare"),
        (["compare", "--run", "no colon"], 2, "NAME: OPTIONS"),
        (["compare", "--sweep", "freeze"], 2, "OPTION=V1,V2"),
        (["compare", "--run", "a: --epochs 1", "--run", "a: --epochs 2"], 2, "run name 'a' is given twice"),
        (["compare", "--run", "a: --out x"], 2, "cannot be set per run"),
        (["compare", "--run", "a: --no-such-flag"], 2, "No such option"),
        (["train", "--arch", "mlp", "--folds", "1"], 2, "at least 2 folds"),
        (["compare", "--sweep", "hidden=8,16", "--sweep", "hidden=32"], 2, "--hidden is swept twice"),
        (["compare", "--sweep", "hidden=,"], 2, "the sweep of hidden has no values"),
        (["compare", "--run", "a: --epochs 1 --epochs 2"], 2, "--epochs is given twice"),
        (["compare", "--base", "--lr 0.1 --lr 0.2", "--run", "a: --epochs 1"], 2, "--lr is given twice"),
    ],
)
def test_bad_study_input(run_cli, args, code, message):
    result = run_cli(*args)
    assert result.code == code
    assert message in result.stderr + result.stdout and "Traceback" not in result.stderr


def test_study_file(run_cli, tmp_path):
    (tmp_path / "study.toml").write_text(
        'base = "--data digits --arch mlp --weights none --epochs 1"\n[runs]\nmlp = "--hidden 128,64"\n[sweep]\nhidden = ["32", "64,32"]\n'
    )
    result = run_cli("compare", "--config", "study.toml", "--out", "from-file", "--json")
    assert result.code == 0, result.stderr
    rows = {row["name"]: row for row in result.json()["table"]}
    assert set(rows) == {"mlp", "hidden=32", "hidden=64,32"}
    assert rows["hidden=32"]["trainable"] < rows["hidden=64,32"]["trainable"]


def test_rerunning_a_study_with_more_epochs_continues_its_runs(run_cli):
    first = run_cli("compare", "--base", "--data digits --arch mlp --weights none --epochs 1", "--run", "a: --hidden 32", "--out", "grow")
    assert first.code == 0, first.stderr
    more = run_cli("compare", "--base", "--data digits --arch mlp --weights none --epochs 2", "--run", "a: --hidden 32", "--out", "grow", "--json")
    assert more.code == 0, more.stderr
    assert more.json()["table"][0]["epochs_run"] == 2


def test_sweeps_given_twice_make_their_grid_and_a_run_wins_over_base(run_cli, tmp_path):
    result = run_cli("compare", "--data", "digits", "--arch", "mlp", "--weights", "none", "-b", "512", "--base", "--epochs 2",
                     "--sweep", "hidden=8,16", "--sweep", "seed=1,2", "--run", "own: --epochs 1", "--out", "grid", "--json")
    assert result.code == 0, result.stderr
    assert [row["name"] for row in result.json()["table"]] == ["own", "hidden=8 seed=1", "hidden=8 seed=2", "hidden=16 seed=1", "hidden=16 seed=2"]
    runs = {run["name"]: run["config"] for run in json.loads((tmp_path / "grid/study.json").read_text())["runs"]}
    assert {name: (c["model"]["hidden"], c["data"]["seed"], c["run"]["epochs"]) for name, c in runs.items()} == {
        "own": ([128, 64], 42, 1), "hidden=8 seed=1": ([8], 1, 2), "hidden=8 seed=2": ([8], 2, 2),
        "hidden=16 seed=1": ([16], 1, 2), "hidden=16 seed=2": ([16], 2, 2)}


@pytest.mark.parametrize("names,message", [
    (["mlp [h]", "mlp _h_"], "run names 'mlp [h]' and 'mlp _h_' would share the folder runs/mlp__h_"),
    (["a/b", "a b"], "run names 'a/b' and 'a b' would share the folder runs/a_b"),
    (["Net", "net"], "run names 'Net' and 'net' would share the folder runs/net on a case-insensitive file system"),
    ([".."], "run name '..' cannot name a folder"),
])
def test_run_names_that_share_a_folder_are_refused_before_anything_is_written(run_cli, tmp_path, names, message):
    runs = [arg for index, name in enumerate(names) for arg in ("--run", f"{name}: --hidden {8 * (index + 1)}")]
    result = run_cli("compare", "--data", "nowhere", "--arch", "mlp", *runs, "--out", "study")
    assert result.code == 2, result.stderr
    assert result.stderr.startswith(f"Error: {message}") and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "study").exists()


def test_run_names_are_shown_as_given_in_the_table_the_log_and_the_figures(run_cli, tmp_path):
    # Rich markup would eat "[h]" and "[bold]"; matplotlib would read "$\foo$" as mathtext and fail.
    names = ("mlp [h]", r"[bold]$\foo$")
    result = run_cli("compare", "--data", "digits", "--arch", "mlp", "--weights", "none", "--epochs", "1", "-b", "512",
                     "--run", f"{names[0]}: --hidden 8", "--run", f"{names[1]}: --hidden 16", "--out", "marks")
    assert result.code == 0, result.stderr
    for name in names:
        assert f"| {name} " in result.stdout and f"== {name}" in result.stderr.splitlines()
    for figure in FIGURES:
        assert (tmp_path / "marks" / figure).exists()


@pytest.mark.parametrize("args", [["--folds", "1"], ["--folds", "10000"]])
def test_a_fold_count_the_data_cannot_take_fails_before_the_study_writes_anything(run_cli, tmp_path, args):
    make_class_folder(tmp_path / "thirty", {"a": 15, "b": 15}, size=(8, 8))
    result = run_cli("compare", "--data", "thirty", "--arch", "mlp", "--sweep", "hidden=8,16", *args, "--out", "study")
    assert result.code == (1 if args[1] == "10000" else 2), result.stderr
    assert ("10000-fold cross-validation needs at least 10000" if args[1] == "10000" else "at least 2 folds") in result.stderr
    assert not (tmp_path / "study").exists()
    kfold = run_cli("train", "--data", "thirty", "--arch", "mlp", *args, "--out", "kfold")
    assert kfold.code == result.code and not (tmp_path / "kfold").exists()


@pytest.mark.parametrize("line,message", [
    ('folds = "abc"', "study.toml: bad value for folds: expected a whole number, got \"abc\""),
    ("folds = -3", "study.toml: bad value for folds: cross-validation needs at least 2 folds (0 turns it off), got -3"),
    ("folds = true", "study.toml: bad value for folds: expected a whole number, got true"),
    ("base = 5", "study.toml: bad value for base: expected a string, got 5"),
    ("sweep = 5", "study.toml: sweep must be a table, [sweep]"),
])
def test_a_bad_study_file_value_exits_2_naming_its_key(run_cli, tmp_path, line, message):
    (tmp_path / "study.toml").write_text(f"{line}\n[runs]\na = \"--hidden 8\"\n")
    result = run_cli("compare", "--config", "study.toml", "--data", "nowhere", "--out", "study")
    assert result.code == 2, result.stderr
    assert result.stderr.strip() == f"Error: {message}" and not (tmp_path / "study").exists()


def test_a_study_into_a_folder_tlcli_did_not_make_is_refused_and_left_whole(run_cli, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.csv").write_text("my results")
    result = run_cli("compare", "--base", "--data digits --arch mlp --weights none --epochs 1", "--run", "a: --hidden 8", "--out", mine)
    assert result.code == 1 and "is not a tlcli study folder and is not empty" in result.stderr, result.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["results.csv"] and (mine / "results.csv").read_text() == "my results"
