"""``tlcli.engine.probe``: the linear probe (full-batch L-BFGS on cached features) converging to
the multinomial logistic regression scikit-learn fits on the same features, and
``choose_weight_decay`` picking the L2 strength on the validation split."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from tlcli.engine.probe import WEIGHT_DECAY_GRID, LinearProbe, ProbeChoice, choose_weight_decay, make_lbfgs

pytestmark = pytest.mark.usefixtures("_one_thread")
CLASSES = 3
# Three Gaussian blobs in 4-D, a unit apart in noise and three apart in means: separable but for a few.
CENTRES = 3.0 * torch.eye(CLASSES, 4)


def _blobs(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % CLASSES
    return CENTRES[labels] + torch.randn(count, 4, generator=generator), labels


@pytest.fixture
def features():
    torch.manual_seed(0)
    return _blobs(60, seed=1), _blobs(30, seed=2)


def _objective_gradient_norm(head: nn.Linear, x, y, weight_decay: float) -> float:
    head.zero_grad()
    loss = nn.functional.cross_entropy(head(x), y) + 0.5 * weight_decay * head.weight.square().sum()
    loss.backward()
    return max(p.grad.abs().max().item() for p in head.parameters())


def _fitted_probe(train, weight_decay: float, epochs: int) -> tuple[nn.Linear, list]:
    head = nn.Linear(4, CLASSES)
    probe = LinearProbe(head, make_lbfgs(head), nn.CrossEntropyLoss(), train, weight_decay)
    return head, [probe.epoch() for _ in range(epochs)]


def test_the_probe_converges_to_the_optimum_of_its_regularised_loss(features):
    train, _ = features
    weight_decay = 1.0 / len(train[1])
    head, passes = _fitted_probe(train, weight_decay, epochs=3)
    # At the optimum the gradient of the penalised loss vanishes (the reported loss is unpenalised).
    assert _objective_gradient_norm(head, *train, weight_decay) < 1e-4
    assert passes[-1].loss == pytest.approx(passes[-2].loss, abs=1e-4)
    assert passes[-1].images == 60 and passes[-1].accuracy >= 0.95


def test_the_probe_is_scikit_learns_logistic_regression(features):
    sklearn = pytest.importorskip("sklearn.linear_model")
    train, val = features
    # scikit-learn's C scales the summed log-loss; the probe's loss is the mean, so C=1 is 1/N.
    head, _ = _fitted_probe(train, 1.0 / len(train[1]), epochs=3)
    reference = sklearn.LogisticRegression(C=1.0, max_iter=1000, tol=1e-10).fit(train[0].numpy(), train[1].numpy())
    with torch.no_grad():
        probabilities = torch.softmax(head(val[0]), 1).numpy()
    assert np.abs(probabilities - reference.predict_proba(val[0].numpy())).max() < 1e-3
    accuracy = (probabilities.argmax(1) == val[1].numpy()).mean()
    assert accuracy == pytest.approx(reference.score(val[0].numpy(), val[1].numpy()))


def test_a_given_weight_decay_is_taken_as_given(features):
    train, val = features
    choice = choose_weight_decay(nn.Linear(4, CLASSES), nn.CrossEntropyLoss(), train, val, monitor="val_loss", given=0.003)
    assert (choice.weight_decay, choice.chosen_on, choice.candidates, choice.fitted) == (0.003, "given", [], None)
    assert "weight decay 0.003, as given" in choice.describe()


@pytest.mark.parametrize("val", [None, (torch.empty(0, 4), torch.empty(0, dtype=torch.long))])
def test_without_validation_images_the_strength_is_scikit_learns_default(features, val):
    train, _ = features
    choice = choose_weight_decay(nn.Linear(4, CLASSES), nn.CrossEntropyLoss(), train, val, monitor="val_loss")
    assert choice.weight_decay == pytest.approx(1.0 / 60)
    assert choice.chosen_on == "no validation split"


def test_every_strength_of_the_grid_is_scored_on_val_and_the_best_is_fitted(features):
    train, val = features
    head = nn.Linear(4, CLASSES)
    before = copy.deepcopy(head.state_dict())
    choice = choose_weight_decay(head, nn.CrossEntropyLoss(), train, val, monitor="val_loss")
    assert [c["weight_decay"] for c in choice.candidates] == list(WEIGHT_DECAY_GRID)
    best = min(choice.candidates, key=lambda c: c["val_loss"])
    assert choice.weight_decay == best["weight_decay"] and choice.chosen_on == "val_loss"
    # The fitted head scores on val what its candidate row says.
    fitted = nn.Linear(4, CLASSES)
    fitted.load_state_dict(choice.fitted)
    with torch.no_grad():
        assert nn.functional.cross_entropy(fitted(val[0]), val[1]).item() == pytest.approx(best["val_loss"], rel=1e-5)
    # The caller's head is left as it was: it loads the choice itself.
    assert all(torch.equal(head.state_dict()[name], tensor) for name, tensor in before.items())


def test_the_validation_split_decides_the_strength(features):
    train, val = features
    criterion = nn.CrossEntropyLoss()
    # Validated on its own (separable) training points, weaker L2 always fits better.
    on_train = choose_weight_decay(nn.Linear(4, CLASSES), criterion, train, train, monitor="val_loss")
    assert on_train.weight_decay == WEIGHT_DECAY_GRID[-1]
    # Against labels that contradict the training set, the most cautious head loses least.
    contradicting = (val[0], (val[1] + 1) % CLASSES)
    on_contradicting = choose_weight_decay(nn.Linear(4, CLASSES), criterion, train, contradicting, monitor="val_loss")
    assert on_contradicting.weight_decay == WEIGHT_DECAY_GRID[0]


def test_val_acc_picks_the_most_accurate_and_breaks_ties_on_the_loss(features):
    train, val = features
    choice = choose_weight_decay(nn.Linear(4, CLASSES), nn.CrossEntropyLoss(), train, val, monitor="val_acc")
    most_accurate = max(c["val_acc"] for c in choice.candidates)
    tied = [c for c in choice.candidates if c["val_acc"] == most_accurate]
    assert choice.weight_decay == min(tied, key=lambda c: c["val_loss"])["weight_decay"]
    assert choice.chosen_on == "val_acc"
    assert f"chosen on val_acc from {len(WEIGHT_DECAY_GRID)} strengths" in choice.describe()


def test_choosing_leaves_the_thread_count_as_it_was(features):
    train, val = features
    previous = torch.get_num_threads()
    # Two threads, so that the probe's switch to one for its fits shows if it were kept.
    torch.set_num_threads(2)
    try:
        choose_weight_decay(nn.Linear(4, CLASSES), nn.CrossEntropyLoss(), train, val, monitor="val_loss")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_to_dict_keeps_the_choice_but_not_the_tensors():
    choice = ProbeChoice(0.01, "val_loss", [{"weight_decay": 0.01, "val_loss": 0.5, "val_acc": 0.9}], fitted={"weight": torch.ones(1)})
    assert choice.to_dict() == {"weight_decay": 0.01, "chosen_on": "val_loss",
                                "candidates": [{"weight_decay": 0.01, "val_loss": 0.5, "val_acc": 0.9}]}
