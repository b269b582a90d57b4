"""The two-phase recipe's quality: phase 1 reaches a logistic-regression probe on the same
features, and phase 2 starts where phase 1 ended instead of undoing it."""

from __future__ import annotations

import pytest

from tlcli.bench.probe import probe, split_features
from tlcli.bench.datasets import write_digits
from tlcli.checkpoint import load_checkpoint
from tlcli.config import DataConfig, FinetuneConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from tlcli.training import finetune, train

pytestmark = pytest.mark.usefixtures("_one_thread", "isolated")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Real handwritten digits as a PNG folder, enlarged to 32x32."""
    return str(write_digits(tmp_path_factory.mktemp("digits"), size=32, count=600))


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
    from tlcli.evaluation import evaluate_checkpoint

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


def test_first_phase2_epoch_keeps_the_loss_phase1_reached(phase1, tmp_path):
    result = finetune(FinetuneConfig(source=str(phase1.run_dir), epochs=1, run_overrides=(("out", str(tmp_path / "ft")),)))
    last_of_phase1 = [row for row in result.history if row["phase"] == 1][-1]["train_loss"]
    first_of_phase2 = next(row for row in result.history if row["phase"] == 2)["train_loss"]
    assert first_of_phase2 <= 1.5 * last_of_phase1 + 0.05
    assert "normalisation statistics kept" in (result.run_dir / "log.txt").read_text()

    # Letting BatchNorm use batch statistics breaks the bound on these same layers.
    trained_bn = finetune(FinetuneConfig(source=str(phase1.run_dir), epochs=1, bn_train=True,
                                         run_overrides=(("out", str(tmp_path / "ft-bn")),)))
    assert next(row for row in trained_bn.history if row["phase"] == 2)["train_loss"] > 1.5 * last_of_phase1 + 0.05


def test_finetune_changes_augmentation(phase1, tmp_path):
    def phase2(name: str, **augment):
        config = FinetuneConfig(source=str(phase1.run_dir), epochs=1, run_overrides=(("out", str(tmp_path / name)),),
                                augment_overrides=tuple(augment.items()))
        return finetune(config)

    plain, augmented = phase2("plain"), phase2("augmented", rotate=40.0, zoom=0.3, hflip=True)
    recorded = load_checkpoint(augmented.run_dir / "last.pt")["config"]["augment"]
    assert (recorded["rotate"], recorded["zoom"], recorded["hflip"]) == (40.0, 0.3, True)
    assert augmented.start == plain.start  # the same model and validation images at the start
    # the same seed and model: only the augmented training images can change the training loss
    assert augmented.history[-1]["train_loss"] != pytest.approx(plain.history[-1]["train_loss"], rel=1e-3)


def test_phase2_keeps_phase1_in_best_pt_when_no_epoch_beats_it(phase1, tmp_path):
    # Adam at 1e-2 on the whole network: far too fast for fine-tuning, every phase-2 epoch is worse.
    result = finetune(FinetuneConfig(source=str(phase1.run_dir), epochs=1, lr=1e-2, backbone_lr_mult=1.0,
                                     run_overrides=(("out", str(tmp_path / "ft")),)))
    assert result.progress.best_epoch == 0
    assert result.monitor == "val_acc" and result.start["val_acc"] == result.progress.best_metric  # phase 2's default
    best = load_checkpoint(result.run_dir / "best.pt")
    parent = load_checkpoint(phase1.run_dir / "best.pt")
    assert all((best["state_dict"][k] == parent["state_dict"][k]).all() for k in parent["state_dict"])
    assert any("best.pt holds phase 1's model" in note for note in result.notes)
