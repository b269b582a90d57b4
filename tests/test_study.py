"""Studies: compare and k-fold produce the reports' tables and figures, and resume when cut off."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

from tlcli.config import DataConfig
from tlcli.data.sources import load_data

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


def test_compare_cnn_vs_mlp_makes_the_table_and_all_figures(run_cli, tmp_path):
    result = run_cli("compare", "--base", "--data digits --weights none --epochs 2", "--run", "cnn: --arch simple_cnn",
                     "--run", "mlp: --arch mlp", "--out", "study", "--json")
    assert result.code == 0, result.stderr
    document = result.json()
    rows = {row["name"]: row for row in document["table"]}
    assert set(rows) == {"cnn", "mlp"}
    assert rows["cnn"]["trainable"] == 2_122_186 and rows["mlp"]["trainable"] == 109_386
    for row in rows.values():
        assert row["epochs_run"] == 2 and row["seconds"] > 0 and 0.5 < row["test_acc"] <= 1 and 0.5 < row["f1_macro"] <= 1
        assert row["verdict"] in ("over-fitting", "under-fitting", "balanced")
        assert (tmp_path / row["run_dir"] / "best.pt").exists()
    assert json.loads((tmp_path / "study" / "comparison.json").read_text())["table"] == document["table"]
    with open(tmp_path / "study" / "comparison.csv") as stream:
        assert [r["name"] for r in csv.DictReader(stream)] == ["cnn", "mlp"]
    for figure in FIGURES:
        with Image.open(tmp_path / "study" / figure) as image:
            assert image.format == "PNG" and image.width >= 600

    again = run_cli("compare", "--base", "--data digits --weights none --epochs 2", "--run", "cnn: --arch simple_cnn",
                    "--run", "mlp: --arch mlp", "--out", "study", "--json")
    assert again.code == 0
    assert set(again.json()["skipped"]) == {"cnn", "mlp"}
    assert [r["best_val_acc"] for r in again.json()["table"]] == [r["best_val_acc"] for r in document["table"]]


def test_a_beans_style_freeze_sweep_on_resnet18(run_cli, tmp_path):
    result = run_cli("compare", "--base", "--data digits --arch resnet18 --weights none --input-size 32 --epochs 1",
                     "--sweep", "freeze=blocks:0,blocks:2,blocks:4", "--out", "sweep", "--json")
    assert result.code == 0, result.stderr
    table = result.json()["table"]
    assert [row["name"] for row in table] == ["freeze=blocks:0", "freeze=blocks:2", "freeze=blocks:4"]
    trainable = [row["trainable"] for row in table]
    assert trainable[0] > trainable[1] > trainable[2] == 512 * 10 + 10
    assert all(row["total"] == table[0]["total"] for row in table)


def test_an_interrupted_study_resumes_the_cut_run(run_cli, tmp_path):
    from tlcli.config import ModelConfig, RunConfig, TrainConfig
    from tlcli.engine.loop import Observer
    from tlcli.study import run_study

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
        (["compare"], 1, "nothing to compare"),
        (["compare", "--run", "no colon"], 1, "NAME: OPTIONS"),
        (["compare", "--sweep", "freeze"], 1, "OPTION=V1,V2"),
        (["compare", "--run", "a: --epochs 1", "--run", "a: --epochs 2"], 1, "must differ"),
        (["compare", "--run", "a: --out x"], 1, "cannot be set per run"),
        (["compare", "--run", "a: --no-such-flag"], 2, "No such option"),
        (["train", "--arch", "mlp", "--folds", "1"], 1, "at least 2"),
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
