"""``tlcli.experiments.sanity`` called directly on the ``tiny`` folder: the six checks pass for a
working setup, the over-fit and initial-loss checks fail where they should, the checks run on
what train would build with augmentation, weight decay and caches off, and no run folder is left."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tlcli.core.config import AugmentConfig, DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from tlcli.experiments.sanity import Check, SanityReport, _sanity_config, run_sanity
from tlcli.models.baselines import MLP

pytestmark = pytest.mark.usefixtures("_one_thread", "isolated")
CHECKS = ["input shape", "labels", "output shape", "initial loss", "backward pass", "over-fit a tiny subset"]


def _config(tiny, *, weights: str = "none") -> TrainConfig:
    return TrainConfig(data=DataConfig(source=str(tiny), val_split=0.34, test_split=0.0),
                       model=ModelConfig(arch="mlp", weights=weights, input_size=8),
                       run=RunConfig(device="cpu", workers=0, epochs=2))


def _by_name(report: SanityReport) -> dict[str, Check]:
    return {check.name: check for check in report.checks}


def test_a_working_setup_passes_every_check(tiny):
    report = run_sanity(_config(tiny))
    assert [check.name for check in report.checks] == CHECKS
    assert report.passed, report.to_dict()
    checks = _by_name(report)
    assert checks["input shape"].detail == "batch (8, 1, 8, 8), model expects (N, 1, 8, 8)"
    assert "ln(2) = 0.693" in checks["initial loss"].detail
    assert checks["backward pass"].detail.startswith("gradients reach 6 of 6 trainable tensors")
    assert "100.0% training accuracy on 8 images" in checks["over-fit a tiny subset"].detail


def test_a_model_that_cannot_learn_fails_only_the_over_fit_check(tiny):
    report = run_sanity(replace(_config(tiny), optim=OptimConfig(lr=1e-9)), steps=3)
    failed = [check.name for check in report.checks if not check.passed]
    assert failed == ["over-fit a tiny subset"]
    assert "after 3 passes (needs 99%)" in _by_name(report)["over-fit a tiny subset"].detail
    assert not report.passed and report.to_dict()["passed"] is False


def test_an_initial_loss_far_from_ln_classes_fails_and_frozen_layers_get_no_gradient(tiny, tmp_path):
    # Weights whose head is sure of class a for every image: the first loss is about 40, not ln 2.
    confident = MLP(2, input_size=8)
    with torch.no_grad():
        confident.layers[6].bias.copy_(torch.tensor([40.0, -40.0]))
    torch.save(confident.state_dict(), tmp_path / "confident.pt")
    report = run_sanity(_config(tiny, weights=str(tmp_path / "confident.pt")), steps=3)
    checks = _by_name(report)
    assert not checks["initial loss"].passed
    assert float(checks["initial loss"].detail.split(",")[0]) > 10
    # Weights from a file freeze the backbone: only the head's two tensors train.
    assert checks["backward pass"].passed
    assert checks["backward pass"].detail == "gradients reach 2 of 2 trainable tensors; frozen tensors with gradients: 0"


def test_the_checks_run_without_augmentation_weight_decay_or_caches():
    config = TrainConfig(augment=AugmentConfig(hflip=True, rotate=10.0),
                         optim=OptimConfig(weight_decay=0.1, head_fit="probe", lr=0.02),
                         run=RunConfig(cache_features="on", cache_images="disk", workers=3, epochs=7))
    sanity = _sanity_config(config)
    assert sanity.augment == AugmentConfig()
    assert (sanity.optim.weight_decay, sanity.optim.head_fit, sanity.optim.lr) == (0.0, "epochs", 0.02)
    assert (sanity.run.cache_features, sanity.run.cache_images, sanity.run.workers, sanity.run.epochs) == ("off", "off", 0, 7)
    assert config.optim.weight_decay == 0.1  # the caller's configuration is left alone


def test_sanity_leaves_no_run_folder_behind(tiny, tmp_path, checkpoints_dir):
    run_sanity(_config(tiny), steps=10)
    assert not checkpoints_dir.exists()
    # Nothing a run writes, anywhere: no checkpoint, log, history or run marker.
    written = {p.name for p in tmp_path.rglob("*")}
    assert not written & {"best.pt", "last.pt", "log.txt", "history.csv", ".tlcli-run", "latest"}


def test_the_report_passes_only_when_every_check_does():
    assert SanityReport([Check("a", True, ""), Check("b", True, "")]).passed
    failing = SanityReport([Check("a", True, ""), Check("b", False, "why")])
    assert failing.to_dict() == {"passed": False, "checks": [{"name": "a", "passed": True, "detail": ""},
                                                             {"name": "b", "passed": False, "detail": "why"}]}
