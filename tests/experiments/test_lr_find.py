"""``tlcli.experiments.lr_find``: ``_steepest_descent`` on synthetic curves (the fastest fall
before the minimum, past the noisy start), and the range test run directly on tiny data: rates
rising geometrically, every parameter group keeping its ratio, divergence cutting it short,
and no run folder left."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from tlcli.core.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from tlcli.core.errors import DataError
from tlcli.experiments.lr_find import _steepest_descent, _sweep, lr_find
from tlcli.engine.observer import Observer
from tlcli.run.build import prepare

pytestmark = pytest.mark.usefixtures("_one_thread", "isolated")
# 61 rates, a tenth of a decade apart, from 1e-6 to 1.
LRS = [10.0 ** (-6 + i / 10) for i in range(61)]
STEEPEST = 30  # 1e-3, where the curve below falls fastest


def _curve() -> list[float]:
    """A fall centred on 1e-3 (a tanh in log10 rate), then a climb past 1e-1."""
    return [1.0 - 0.5 * math.tanh(2 * (math.log10(lr) + 3)) + 5 * max(0.0, math.log10(lr) + 1) ** 2 for lr in LRS]


def test_the_suggestion_is_where_the_loss_falls_fastest():
    assert _steepest_descent(LRS, _curve()) == pytest.approx(LRS[STEEPEST])


def test_a_fall_past_the_minimum_is_not_suggested():
    losses = _curve()
    lowest = losses.index(min(losses))
    # A sharp drop while diverging, still above the minimum.
    losses[lowest + 8:] = [value - 1.5 for value in losses[lowest + 8:]]
    assert min(losses[lowest + 1:]) > losses[lowest]
    assert _steepest_descent(LRS, losses) == pytest.approx(LRS[STEEPEST])


def test_the_noisy_first_tenth_is_ignored():
    losses = _curve()
    losses[0], losses[1], losses[2] = 9.0, 5.0, 1.6  # the steepest fall of all, in the first six steps
    assert _steepest_descent(LRS, losses) == pytest.approx(LRS[STEEPEST])


def test_a_curve_that_only_rises_suggests_a_tenth_of_the_first_rate():
    rising = [1.0 + i / 10 for i in range(len(LRS))]
    assert _steepest_descent(LRS, rising) == pytest.approx(LRS[0] / 10)


def _config(data) -> TrainConfig:
    return TrainConfig(data=DataConfig(source=str(data), val_split=0.34, test_split=0.0),
                       model=ModelConfig(arch="mlp", weights="none", input_size=8), run=RunConfig(device="cpu", workers=0, epochs=2))


@pytest.mark.parametrize("start_lr, end_lr", [(1e-2, 1e-3), (0.0, 1.0), (1e-3, 1e-3)])
def test_a_range_that_does_not_rise_from_above_zero_is_refused(tmp_path, start_lr, end_lr):
    with pytest.raises(DataError, match="need 0 < start lr < end lr"):
        lr_find(_config(tmp_path / "never-read"), start_lr=start_lr, end_lr=end_lr)


def test_the_range_test_on_tiny_data(tiny, checkpoints_dir):
    # Without ``out``: drawing the plot costs seconds of matplotlib start-up (the CLI test draws it).
    finding = lr_find(_config(tiny), start_lr=1e-6, end_lr=1.0, iterations=30)
    assert len(finding.lrs) == len(finding.losses) == 30 and finding.notes == []
    assert finding.lrs[0] == pytest.approx(1e-6) and finding.lrs[-1] == pytest.approx(1.0)
    assert np.allclose(np.diff(np.log(finding.lrs)), math.log(1e6) / 29)
    assert all(math.isfinite(loss) for loss in finding.losses)
    assert finding.suggested_lr == _steepest_descent(finding.lrs, finding.losses)
    assert finding.plot is None
    assert finding.to_dict()["suggested_lr"] == finding.suggested_lr
    assert not checkpoints_dir.exists()  # a range test is no run


def test_every_parameter_group_keeps_its_ratio_to_the_heads_rate(tiny):
    config = _config(tiny)
    config = replace(config, optim=OptimConfig(head_fit="epochs", lr=1e-5, backbone_lr_mult=0.1))
    trainer = prepare(config).trainer
    lrs, _ = _sweep(trainer, 1e-5, 1e-2, 6, Observer())
    rates = {group["name"]: group["lr"] for group in trainer.optimizer.param_groups}
    assert rates["head"] == pytest.approx(lrs[-1])
    assert rates["backbone"] == pytest.approx(0.1 * lrs[-1])


def _clashing_folder(root):
    """Two classes of the same six pictures, one pixel apart: no rate can fit both labels, so a
    high one makes the loss explode."""
    rng = np.random.default_rng(0)
    for index in range(6):
        pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        for name, flip in (("a", 0), ("b", 1)):
            (root / name).mkdir(parents=True, exist_ok=True)
            changed = pixels.copy()
            changed[0, 0, 0] ^= flip
            Image.fromarray(changed).save(root / name / f"{index}.png")
    return root


def test_a_diverging_loss_ends_the_range_early_and_says_so(tmp_path):
    finding = lr_find(_config(_clashing_folder(tmp_path / "clash")), start_lr=1e-7, end_lr=1e4, iterations=40)
    assert 5 <= len(finding.losses) < 40
    assert finding.notes == [f"stopped after {len(finding.losses)} of 40 steps: the loss diverged"]
    assert finding.suggested_lr < finding.lrs[-1]
