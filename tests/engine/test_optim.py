"""``engine.optim``: optimisers, parameter groups, schedules and the loss, on tiny real modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from tlcli.core.config import DEFAULT_LR, HEAD_ONLY_LR, OPTIMIZERS, OptimConfig
from tlcli.engine.optim import build_criterion, build_optimizer, build_scheduler, continue_schedule, parameter_groups
from tlcli.core.errors import TlcliError

# Schedules stepped without training steps in between: torch's reminder about the order is noise here.
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")

CLASSES = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}


def _net():
    # "header" shares a prefix with "head" but is part of the backbone.
    return nn.ModuleDict({"backbone": nn.Linear(4, 4), "header": nn.Linear(4, 4), "head": nn.Linear(4, 2)})


def _ids(*modules) -> set[int]:
    return {id(p) for m in modules for p in m.parameters()}


def _optimizer(lr=0.1, **options):
    config = OptimConfig(lr=lr, **options)
    return build_optimizer(parameter_groups(_net(), "head", config), config)


def test_every_optimizer_is_its_torch_class_with_lr_and_weight_decay_in_every_group():
    assert set(OPTIMIZERS) == set(CLASSES)
    for name in OPTIMIZERS:
        optimizer = _optimizer(0.05, optimizer=name, weight_decay=0.01, backbone_lr_mult=0.1)
        assert type(optimizer) is CLASSES[name]
        assert {g["name"]: g["lr"] for g in optimizer.param_groups} == pytest.approx({"head": 0.05, "backbone": 0.005})
        assert all(g["weight_decay"] == 0.01 for g in optimizer.param_groups)
    sgd = _optimizer(optimizer="sgd", momentum=0.5, nesterov=True)
    assert sgd.param_groups[0]["momentum"] == 0.5 and sgd.param_groups[0]["nesterov"] is True
    with pytest.raises(TlcliError, match="lbfgs"):
        _optimizer(optimizer="lbfgs")


def test_groups_split_head_from_backbone_and_the_default_lr_depends_on_whether_only_the_head_trains():
    net = _net()
    groups = {g["name"]: g for g in parameter_groups(net, "head", OptimConfig(lr=0.2, backbone_lr_mult=0.25))}
    assert {id(p) for p in groups["head"]["params"]} == _ids(net["head"])
    assert {id(p) for p in groups["backbone"]["params"]} == _ids(net["backbone"], net["header"])
    assert groups["head"]["lr"] == 0.2 and groups["backbone"]["lr"] == pytest.approx(0.2 * 0.25)
    everything = parameter_groups(net, "head", OptimConfig())
    assert {g["name"]: g["lr"] for g in everything} == {"head": DEFAULT_LR, "backbone": DEFAULT_LR}
    net["backbone"].requires_grad_(False), net["header"].requires_grad_(False)
    head_only = parameter_groups(net, "head", OptimConfig())
    assert [(g["name"], g["lr"]) for g in head_only] == [("head", HEAD_ONLY_LR)]
    net["head"].requires_grad_(False)
    with pytest.raises(TlcliError, match="frozen"):
        parameter_groups(net, "head", OptimConfig())
    with pytest.raises(TlcliError, match=r"0\.0"):
        parameter_groups(_net(), "head", OptimConfig(lr=0.0))


def _lrs(schedule, steps, *, epochs=10, **config):
    optimizer = _optimizer(0.1, schedule=schedule, **config)
    scheduler, per_batch = build_scheduler(optimizer, OptimConfig(schedule=schedule, **config), epochs=epochs, steps_per_epoch=5)
    seen = [optimizer.param_groups[0]["lr"]]
    for _ in range(steps):
        scheduler.step()
        seen.append(optimizer.param_groups[0]["lr"])
    return seen, per_batch


def test_cosine_decays_per_epoch_to_zero_after_a_linear_warmup():
    lrs, per_batch = _lrs("cosine", 10)
    assert not per_batch
    assert lrs[0] == pytest.approx(0.1) and lrs[5] == pytest.approx(0.05) and lrs[10] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    warm, _ = _lrs("cosine", 10, warmup_epochs=3)
    rises = [b - a for a, b in zip(warm[:3], warm[1:4])]
    assert rises == pytest.approx([rises[0]] * 3) and rises[0] > 0 and warm[3] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(warm[3:], warm[4:])) and warm[10] == pytest.approx(0.0, abs=1e-12)


def test_step_schedule_multiplies_by_gamma_every_step_size_epochs_and_none_is_none():
    lrs, per_batch = _lrs("step", 7, step_size=2, gamma=0.5)
    assert not per_batch
    assert lrs == pytest.approx([0.1 * 0.5 ** (epoch // 2) for epoch in range(8)])
    assert build_scheduler(_optimizer(), OptimConfig(schedule="none"), epochs=3, steps_per_epoch=2) == (None, False)
    with pytest.raises(TlcliError, match="linear"):
        build_scheduler(_optimizer(), OptimConfig(schedule="linear"), epochs=3, steps_per_epoch=2)


def test_onecycle_steps_per_batch_over_epochs_times_steps_and_peaks_at_each_groups_rate():
    optimizer = _optimizer(0.1, schedule="onecycle", backbone_lr_mult=0.5)
    scheduler, per_batch = build_scheduler(optimizer, OptimConfig(schedule="onecycle"), epochs=4, steps_per_epoch=25)
    assert per_batch
    lrs = []  # the rates (head, backbone) the 100 batches train at: one scheduler step after each
    for _ in range(100):
        lrs.append(tuple(g["lr"] for g in optimizer.param_groups))
        scheduler.step()
    peak = lrs.index(max(lrs))
    assert lrs[peak] == pytest.approx((0.1, 0.05)) and 0 < peak < 99
    assert lrs[0][0] < 0.1 / 10 and lrs[-1][0] < 0.1 / 1000
    with pytest.raises(ValueError):  # 100 steps was the whole cycle
        scheduler.step()


@pytest.mark.parametrize("maximize", [False, True])
def test_plateau_cuts_the_rate_by_gamma_once_the_monitored_value_stops_improving(maximize):
    optimizer = _optimizer(0.1)
    config = OptimConfig(schedule="plateau", gamma=0.5)
    scheduler, per_batch = build_scheduler(optimizer, config, epochs=10, steps_per_epoch=5, maximize=maximize)
    assert not per_batch
    for value in (1.0, 2.0, 3.0, 4.0, 5.0):  # rising: an improvement only for an accuracy
        scheduler.step(value)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 if maximize else 0.05)


def _resumed(schedule, old_epochs, new_epochs, done):
    """A run of ``old_epochs`` stopped after ``done`` scheduler steps, rebuilt for ``new_epochs`` and loaded."""
    first = _optimizer(0.1)
    scheduler, _ = build_scheduler(first, OptimConfig(schedule=schedule), epochs=old_epochs, steps_per_epoch=1)
    for _ in range(done):
        scheduler.step()
    again = _optimizer(0.1)  # as a resume does: build for the new run, then load the saved states
    resumed, _ = build_scheduler(again, OptimConfig(schedule=schedule), epochs=new_epochs, steps_per_epoch=1)
    again.load_state_dict(first.state_dict())
    resumed.load_state_dict(scheduler.state_dict())
    continue_schedule(resumed, again, total_steps=new_epochs)
    return resumed, again


def test_continue_schedule_puts_a_resumed_cosine_on_its_new_horizon():
    resumed, optimizer = _resumed("cosine", 4, 8, 2)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(_lrs("cosine", 2, epochs=8)[0][2])
    resumed.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(_lrs("cosine", 3, epochs=8)[0][3])


def test_continue_schedule_stretches_onecycle_to_the_raised_total():
    resumed, optimizer = _resumed("onecycle", 10, 20, 4)
    assert resumed.total_steps == 20
    lrs = []  # the rates of the remaining 16 batches
    for _ in range(16):  # without the stretch, the 7th step would be past the old cycle's end
        lrs.append(optimizer.param_groups[0]["lr"])
        resumed.step()
    peak = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(0.1) and peak > 0
    assert all(a > b for a, b in zip(lrs[peak:], lrs[peak + 1:])) and lrs[-1] < 0.1 / 1000


def test_label_smoothing_is_the_mix_of_cross_entropy_and_the_uniform_target():
    logits, labels = torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 3, 0, 1])
    criterion = build_criterion(OptimConfig(label_smoothing=0.2), labels.tolist(), 4)
    log_p = logits.log_softmax(1)
    expected = -(0.8 * log_p[torch.arange(6), labels] + 0.2 * log_p.mean(1)).mean()
    assert criterion(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    assert build_criterion(OptimConfig(), labels.tolist(), 4).weight is None


def test_balanced_class_weights_are_scikit_learns_and_weight_the_loss():
    train_labels = [0, 0, 0, 0, 1, 1, 2]  # class 3 absent
    criterion = build_criterion(OptimConfig(class_weights="balanced"), train_labels, 4)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=np.array(train_labels)).tolist() + [0.0]
    assert criterion.weight.tolist() == pytest.approx(expected)
    logits, labels = torch.randn(5, 4, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0, 2])
    w = criterion.weight[labels]
    nll = -logits.log_softmax(1)[torch.arange(5), labels]
    assert criterion(logits, labels).item() == pytest.approx(((w * nll).sum() / w.sum()).item(), rel=1e-6)
    with pytest.raises(TlcliError, match="inverse"):
        build_criterion(OptimConfig(class_weights="inverse"), train_labels, 4)
