"""tlcli sanity and tlcli lr-find on real digits."""

from __future__ import annotations

import math

import pytest
from PIL import Image

pytestmark = pytest.mark.usefixtures("isolated")


def test_sanity_passes_for_a_working_setup(run_cli):
    result = run_cli("sanity", "--arch", "simple_cnn", "--data", "digits", "--json")
    assert result.code == 0, result.stderr
    checks = {c["name"]: c for c in result.json()["checks"]}
    assert set(checks) == {"input shape", "labels", "output shape", "initial loss", "backward pass", "over-fit a tiny subset"}
    assert all(c["passed"] for c in checks.values())
    assert "ln(10) = 2.303" in checks["initial loss"]["detail"]


def test_sanity_fails_when_the_model_cannot_learn(run_cli):
    result = run_cli("sanity", "--arch", "mlp", "--lr", "1e-9", "--steps", "3")
    assert result.code == 1
    assert "FAIL" in result.stdout and "over-fit a tiny subset" in result.stderr


def test_sanity_rejects_bad_train_options_as_usage_errors(run_cli):
    assert run_cli("sanity", "--arch", "mlp", "--no-such-option").code == 2


def test_lr_find_suggests_a_rate_on_the_falling_part_of_the_curve(run_cli, tmp_path):
    result = run_cli("lr-find", "--arch", "mlp", "--iterations", "60", "--plot", "lr.png", "--json")
    assert result.code == 0, result.stderr
    finding = result.json()
    lrs, losses = finding["lrs"], finding["losses"]
    assert lrs == sorted(lrs) and lrs[0] == pytest.approx(1e-7) and all(math.isfinite(v) for v in losses)
    assert 1e-5 <= finding["suggested_lr"] <= 1e-1
    lowest = losses.index(min(losses))
    assert finding["suggested_lr"] < lrs[lowest]
    assert losses[lrs.index(finding["suggested_lr"])] < losses[0]
    with Image.open(tmp_path / "lr.png") as image:
        assert image.format == "PNG"
    assert not (tmp_path / "checkpoints" / "latest").exists()  # no run was created
