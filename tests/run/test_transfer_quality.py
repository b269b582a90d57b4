"""The two-phase recipe's quality: phase 1 reaches a logistic-regression probe on the same
features, and phase 2 starts where phase 1 ended instead of undoing it."""

from __future__ import annotations

import pytest
import torch

from tlcli.bench.logistic_probe import probe, split_features
from tlcli.bench.datasets import write_digits
from tlcli.run.checkpoint import load_checkpoint
from tlcli.core.config import BACKBONE_LR_CANDIDATES, PHASE2_AUGMENT, PHASE2_LABEL_SMOOTHING, PHASE2_PATIENCE, DataConfig, FinetuneConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from tlcli.run.finetune import finetune
from tlcli.run.resume import resume
from tests.helpers import train

pytestmark = pytest.mark.usefixtures("_one_thread", "isolated")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Real handwritten digits as a PNG folder, enlarged to 32x32."""
    return str(write_digits(tmp_path_factory.mktemp("digits"), size=32, count=400))


def _phase1(data: str, out: str, **optim) -> TrainConfig:
    """A frozen random-weight ResNet-18 (real BatchNorm layers) with the default head fit."""
    return TrainConfig(
        data=DataConfig(data),
        model=ModelConfig(arch="resnet18", weights="none", freeze="backbone", input_size=32),
        optim=OptimConfig(**optim),
        run=RunConfig(epochs=10, out=out, workers=0),
    )


@pytest.fixture(scope="module")
def phase1(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "phase1"
    return train(_phase1(digits, str(out)))


def _test_accuracy(run_dir) -> float:
    from tlcli.evaluation.evaluate import evaluate_checkpoint

    return evaluate_checkpoint(str(run_dir / "best.pt"), workers=0).metrics.accuracy


def test_phase1_matches_a_logistic_regression_on_the_same_features(phase1):
    reference = probe(split_features(str(phase1.run_dir / "best.pt")))
    assert phase1.head_fit["weight_decay"] > 0  # the L2 strength was chosen, not left at zero
    assert "lbfgs probe" in {row["method"] for row in phase1.history}
    ours = _test_accuracy(phase1.run_dir)
    assert ours >= reference["test_acc"] - 0.01, (ours, reference)


def test_head_fit_epochs_trains_the_head_epoch_by_epoch(digits, tmp_path):
    epochs = train(_phase1(digits, str(tmp_path / "epochs"), head_fit="epochs"))
    assert {row["method"] for row in epochs.history} == {"adam"}
    assert epochs.head_fit is None
    assert epochs.history[-1]["train_loss"] < epochs.history[0]["train_loss"]


# Phase 2 as it ran before its defaults augmented and smoothed labels (both raise the training
# loss for reasons of their own), at the gentle backbone rate, without its safety nets.
_PLAIN = {"backbone_lr_mult": 0.1, "ema": False, "wise_ft": False,
          "overrides": (("optim", "label_smoothing", 0.0), ("augment", "rotate", 0.0), ("augment", "zoom", 0.0), ("augment", "contrast", 0.0))}


def test_first_phase2_epoch_keeps_the_loss_phase1_reached(phase1, tmp_path):
    result = finetune(FinetuneConfig(source=str(phase1.run_dir), epochs=1, out=str(tmp_path / "ft"), **_PLAIN))
    last_of_phase1 = [row for row in result.history if row["phase"] == 1][-1]["train_loss"]
    first_of_phase2 = next(row for row in result.history if row["phase"] == 2)["train_loss"]
    assert first_of_phase2 <= 1.5 * last_of_phase1 + 0.05
    assert "normalisation statistics kept" in (result.run_dir / "log.txt").read_text()

    # Letting BatchNorm use batch statistics breaks the bound on these same layers.
    trained_bn = finetune(FinetuneConfig(source=str(phase1.run_dir), epochs=1, bn_train=True,
                                         out=str(tmp_path / "ft-bn"), **_PLAIN))
    assert next(row for row in trained_bn.history if row["phase"] == 2)["train_loss"] > 1.5 * last_of_phase1 + 0.05


def test_finetune_changes_augmentation(phase1, tmp_path):
    def phase2(name: str, **augment):
        options = {**_PLAIN, "overrides": _PLAIN["overrides"] + tuple(("augment", name, value) for name, value in augment.items())}
        return finetune(FinetuneConfig(source=str(phase1.run_dir), epochs=1, out=str(tmp_path / name), **options))

    plain, augmented = phase2("plain"), phase2("augmented", rotate=40.0, zoom=0.3, hflip=True)
    recorded = load_checkpoint(augmented.run_dir / "last.pt")["config"]["augment"]
    assert (recorded["rotate"], recorded["zoom"], recorded["hflip"]) == (40.0, 0.3, True)
    assert augmented.start == plain.start  # the same model and validation images at the start
    # the same seed and model: only the augmented training images can change the training loss
    assert augmented.history[-1]["train_loss"] != pytest.approx(plain.history[-1]["train_loss"], rel=1e-3)


def test_phase2_keeps_phase1_in_best_pt_when_no_epoch_beats_it(phase1, tmp_path):
    # Adam at 1e-2 on the whole network: far too fast for fine-tuning, every phase-2 epoch is worse.
    result = finetune(FinetuneConfig(source=str(phase1.run_dir), epochs=1, lr=1e-2, backbone_lr_mult=1.0,
                                     out=str(tmp_path / "ft")))
    assert result.progress.best_epoch == 0
    assert result.monitor == "val_acc" and result.start["val_acc"] == result.progress.best_metric  # phase 2's default
    best = load_checkpoint(result.run_dir / "best.pt")
    parent = load_checkpoint(phase1.run_dir / "best.pt")
    assert all((best["state_dict"][k] == parent["state_dict"][k]).all() for k in parent["state_dict"])
    assert any("best.pt holds phase 1's model" in note for note in result.notes)


def test_finetune_defaults_try_rates_average_weights_and_mix_with_phase1(phase1, tmp_path):
    from tlcli.evaluation.evaluate import evaluate_checkpoint

    result = finetune(FinetuneConfig(source=str(phase1.run_dir), epochs=2, out=str(tmp_path / "ft")))
    trial = result.trial
    assert [c["backbone_lr_mult"] for c in trial["candidates"]] == list(BACKBONE_LR_CANDIDATES)
    assert trial["chosen"] in BACKBONE_LR_CANDIDATES and trial["start"] == result.start
    last = load_checkpoint(result.run_dir / "last.pt")
    config = last["config"]
    assert config["optim"]["backbone_lr_mult"] == trial["chosen"] and last["trial"] == trial  # a resume trains at the chosen rate
    assert {name: config["augment"][name] for name in PHASE2_AUGMENT} == PHASE2_AUGMENT and not config["augment"]["hflip"]
    assert (config["optim"]["label_smoothing"], config["run"]["patience"]) == (PHASE2_LABEL_SMOOTHING, PHASE2_PATIENCE)
    assert all(0 <= row["ema_val_acc"] <= 1 for row in result.history if row["phase"] == 2)
    assert last["average"]["updates"] > 0
    log = (result.run_dir / "log.txt").read_text()
    assert "chosen by a trial" in log and "moving average's val loss" in log
    # best.pt: never below phase 1 on the validation split
    best = load_checkpoint(result.run_dir / "best.pt")
    val = evaluate_checkpoint(str(result.run_dir / "best.pt"), split="val", workers=0).metrics.accuracy
    assert val >= result.start["val_acc"]
    if result.progress.best_epoch:
        assert best["wise_ft"] == result.wise_ft and "WiSE-FT" in log
        chosen = next(mix for mix in result.wise_ft["mixes"] if mix["alpha"] == result.wise_ft["alpha"])
        assert val == pytest.approx(chosen["val_acc"])
        assert chosen["val_acc"] == max(mix["val_acc"] for mix in result.wise_ft["mixes"])

    # A kill after best.pt took the moving average's weights, before last.pt: the resume trains on
    # from the trained weights it carries, not from the average (here zeros, which cannot learn).
    killed = {**last, "state_dict": {name: value * 0 for name, value in last["state_dict"].items()},
              "trained_state_dict": last["state_dict"], "weights_of": "moving average"}
    torch.save(killed, result.run_dir / "best.pt")
    (result.run_dir / "last.pt").unlink()
    resumed = resume(result.run_dir / "last.pt", epochs=3)
    assert resumed.history[-1]["epoch"] == last["history"][-1]["epoch"] + 1
    assert resumed.history[-1]["val_acc"] >= 0.5 * result.start["val_acc"]
