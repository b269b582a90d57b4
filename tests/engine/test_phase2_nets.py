"""Phase 2's mechanisms on tiny data on the CPU: the trial of backbone learning rates, the moving
average of the weights, WiSE-FT's mix, the default augmentation and test-time augmentation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from tlcli.core.config import PHASE2_AUGMENT, AugmentConfig
from tlcli.data.loading import make_loader
from tlcli.data.transforms import build_augment
from tlcli.engine.averaging import WeightAverage, mix_weights, weights_in
from tlcli.engine.device import Precision
from tlcli.engine.loop import end_epoch, evaluate, train_one_epoch
from tlcli.engine.observer import Observer
from tlcli.engine.state import Progress, Trainer
from tlcli.engine.trial import choose_backbone_rate
from tlcli.engine.tta import VIEWS, Averaged, averaged_probabilities, view
from tlcli.run.wiseft import choose_mix

CPU = torch.device("cpu")
FP32 = Precision("cpu", None, False)


class Samples(Dataset):
    """(input, label, index, None), as the loaders' collate expects."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i]), i, None


def _bottleneck_data(n: int, seed: int):
    """The label is the sign of the last of 8 inputs, which the backbone below starts blind to."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=generator)
    return x, (x[:, 7] > 0).long()


def _network() -> nn.Sequential:
    """A 'pretrained' backbone of 2 features that ignore input 7, and a linear head."""
    torch.manual_seed(0)
    network = nn.Sequential()
    network.add_module("backbone", nn.Linear(8, 2))
    network.add_module("head", nn.Linear(2, 2))
    with torch.no_grad():
        network.backbone.weight[:, 7] = 0.0
    return network


def _trainer(network: nn.Module, *, head_lr: float) -> tuple[Trainer, callable]:
    train = make_loader(Samples(*_bottleneck_data(480, 1)), batch_size=16, shuffle=True, workers=0, seed=0, persistent=False)
    val = make_loader(Samples(*_bottleneck_data(200, 2)), batch_size=50, shuffle=False, workers=0, seed=0, persistent=False)

    def optimizer(mult: float) -> torch.optim.Optimizer:
        return torch.optim.Adam([{"params": network.head.parameters(), "lr": head_lr},
                                 {"params": network.backbone.parameters(), "lr": head_lr * mult}])

    trainer = Trainer(network, train, val, nn.CrossEntropyLoss(), optimizer(0.1), FP32.scaler(), None, False, CPU, FP32,
                      monitor="val_acc")
    return trainer, optimizer


def test_trial_picks_the_full_rate_when_the_head_cannot_fit_the_features():
    network = _network()
    before = {name: value.clone() for name, value in network.state_dict().items()}
    trainer, optimizer = _trainer(network, head_lr=0.05)
    trial = choose_backbone_rate(trainer, network, (0.1, 1.0), optimizer)
    assert trial.start["val_acc"] < 0.65  # phase 1's head cannot tell the classes apart
    assert trial.chosen == 1.0, trial.to_dict()
    assert trial.scores[1.0]["val_acc"] > trial.scores[0.1]["val_acc"] + 0.1
    assert trial.batches == 30  # an epoch
    # the network is back at its starting weights, and the trainer's optimiser was not stepped
    assert all(torch.equal(before[name], value) for name, value in network.state_dict().items())
    assert not trainer.optimizer.state


def test_trial_keeps_the_gentle_rate_when_the_backbone_must_not_move():
    """A backbone rate that overshoots (the full rate at a head rate this high) loses the trial."""
    network = _network()
    with torch.no_grad():
        network.backbone.weight.zero_()
        network.backbone.weight[0, 7] = 3.0  # the features already carry the label
        network.head.weight.copy_(torch.tensor([[-3.0, 0.0], [3.0, 0.0]]))
        network.head.bias.zero_()
    trainer, optimizer = _trainer(network, head_lr=2.0)
    trial = choose_backbone_rate(trainer, network, (0.1, 1.0), optimizer)
    assert trial.start["val_acc"] > 0.95
    assert trial.chosen == 0.1, trial.to_dict()


def test_moving_average_warms_up_and_swaps_in_and_out():
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.fill_(0.0)
    average = WeightAverage(layer, decay=0.9)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    average.update()  # decay min(0.9, 2/11): the average moves most of the way at first
    assert average.weights["weight"][0, 0].item() == pytest.approx(1 - 2 / 11)
    for _ in range(50):
        average.update()
    assert average.decay == 0.9 and average.updates == 51
    with pytest.raises(RuntimeError), average.swapped_in():
        assert layer.weight[0, 0].item() == pytest.approx(average.weights["weight"][0, 0].item())
        raise RuntimeError("an evaluation that fails")
    assert layer.weight[0, 0].item() == 1.0  # the network's own weights are back after an error too
    restored = WeightAverage(layer, decay=0.5)
    restored.load_state_dict(average.state_dict())
    assert restored.updates == 51 and torch.equal(restored.weights["weight"], average.weights["weight"])


def test_mix_weights_ends_are_the_two_models_and_counters_come_from_the_newer():
    start = {"w": torch.zeros(3), "batches": torch.tensor(5)}
    end = {"w": torch.ones(3), "batches": torch.tensor(9)}
    assert torch.equal(mix_weights(start, end, 0.0)["w"], start["w"])
    assert torch.equal(mix_weights(start, end, 1.0)["w"], end["w"])
    assert torch.allclose(mix_weights(start, end, 0.25)["w"], torch.full((3,), 0.25))
    assert mix_weights(start, end, 0.25)["batches"].item() == 9
    with pytest.raises(ValueError):
        mix_weights(start, {"w": torch.ones(3)}, 0.5)


def _fitted(network: nn.Module) -> dict:
    with torch.no_grad():
        network.backbone.weight.zero_()
        network.backbone.weight[0, 7] = 3.0
        network.head.weight.copy_(torch.tensor([[-3.0, 0.0], [3.0, 0.0]]))
    return {name: value.clone() for name, value in network.state_dict().items()}


@pytest.mark.parametrize("phase2_is_better", [True, False])
def test_wise_ft_never_ends_below_phase1_on_val(phase2_is_better):
    network = _network()
    blind = {name: value.clone() for name, value in network.state_dict().items()}  # ~chance on val
    good = _fitted(network)
    start, end = (blind, good) if phase2_is_better else (good, blind)
    trainer, _ = _trainer(network, head_lr=0.01)
    with weights_in(network, start):
        phase1 = evaluate(network, trainer.val_loader, trainer.criterion, device=CPU, precision=FP32).accuracy
    choice, weights = choose_mix(trainer, network, start, end)
    assert set(choice.scores) == {0.0, 0.25, 0.5, 0.75, 1.0}
    assert choice.scores[0.0]["val_acc"] == pytest.approx(phase1)
    assert choice.scores[choice.alpha]["val_acc"] == max(score["val_acc"] for score in choice.scores.values())
    assert choice.scores[choice.alpha]["val_acc"] >= phase1
    assert (choice.alpha > 0) == phase2_is_better
    with weights_in(network, weights):
        mixed = evaluate(network, trainer.val_loader, trainer.criterion, device=CPU, precision=FP32).accuracy
    assert mixed == pytest.approx(choice.scores[choice.alpha]["val_acc"])


def test_phase2_default_augmentation_keeps_digit_labels():
    """A classifier fitted on clean handwritten digits reads the augmented ones as well as the
    clean ones; a flip (which phase 2 leaves out) costs it far more."""
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    digits = load_digits()
    images = np.stack([np.asarray(Image.fromarray((d * 255 / 16).astype(np.uint8)).resize((16, 16), Image.Resampling.BILINEAR))
                       for d in digits.images])
    flat = images.reshape(len(images), -1) / 255.0
    fitted = LogisticRegression(C=0.05, max_iter=300).fit(flat[:1200], digits.target[:1200])
    held_out = torch.from_numpy(images[1200:1500]).unsqueeze(1)  # uint8, 1 channel

    def accuracy(augment: AugmentConfig) -> float:
        torch.manual_seed(0)
        transform = build_augment(augment, channels=1)
        changed = torch.stack([transform(image) for image in held_out]) if transform else held_out
        return fitted.score(changed.reshape(len(changed), -1).numpy() / 255.0, digits.target[1200:1500])

    clean, phase2 = accuracy(AugmentConfig()), accuracy(AugmentConfig(**PHASE2_AUGMENT))
    flipped = accuracy(AugmentConfig(hflip=True, rotate=180.0))
    assert not AugmentConfig(**PHASE2_AUGMENT).hflip
    assert phase2 >= clean - 0.08, (clean, phase2)
    assert flipped < clean - 0.3, (clean, flipped)


def test_tta_views_keep_the_image_and_average_probabilities():
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert VIEWS[0] == (1.0, 0.0) and view(images, scale=1.0, degrees=0.0) is images
    rotated = view(images, scale=1.0, degrees=8.0)
    assert rotated.dtype == torch.uint8 and rotated.shape == images.shape
    as_float = view(images.float(), scale=1.0, degrees=8.0)
    assert (as_float.round() - rotated.float()).abs().max() <= 1  # the same map on uint8 and float pixels
    assert not torch.equal(rotated, images)

    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))
    x = torch.randn(2, 3, 16, 16)
    expected = sum(model(view(x, scale=s, degrees=d)).softmax(1) for s, d in VIEWS) / len(VIEWS)
    assert torch.allclose(averaged_probabilities(lambda b: model(b).softmax(1), x), expected)
    assert torch.allclose(Averaged(model)(x).softmax(1), expected, atol=1e-6)
    assert math.isclose(Averaged(model)(x).exp().sum(1)[0].item(), 1.0, rel_tol=1e-5)


def test_early_stopping_waits_on_the_phases_own_best_not_on_phase1s():
    """Phase 2's first epochs may sit below phase 1 while they climb: patience counts from the
    best epoch of the phase itself, while best.pt still needs to beat phase 1."""
    network = _network()
    trainer, optimizer = _trainer(network, head_lr=0.05)
    trainer.optimizer, trainer.patience = optimizer(1.0), 1
    progress = Progress(best_metric=2.0)  # phase 1's, beyond any accuracy
    while progress.epoch < 4 and not progress.stopped_early:
        end_epoch(trainer, progress, train_one_epoch(trainer), epoch=progress.epoch + 1, lr=0.05, observer=Observer())
    assert progress.epoch >= 2 and progress.best_epoch == 0 and progress.best_metric == 2.0
    assert progress.phase_best is not None and progress.phase_best <= 1.0
