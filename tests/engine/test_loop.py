"""``engine.loop``: one batch, one epoch and one evaluation of a tiny linear model, through the
real collate and loader (samples shaped as ``TransformedImages`` gives them), in fp32 on the CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from tlcli.data.loading import make_loader
from tlcli.engine.device import Precision
from tlcli.engine.loop import evaluate, train_one_epoch, train_step
from tlcli.engine.state import Trainer
from tlcli.core.errors import DataError, TlcliError

FP32 = Precision("cpu", None, False)
CPU = torch.device("cpu")


class Samples(Dataset):
    """(image, label, index, None), or (None, label, index, reason) for an image that failed to decode."""

    def __init__(self, x, y, broken=()):
        self.x, self.y, self.broken = x, y, set(broken)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        if i in self.broken:
            return None, int(self.y[i]), i, f"{i}.png: truncated"
        return self.x[i], int(self.y[i]), i, None


def _data(n=64, seed=0):
    """Linearly separable: 3 classes of 4 features."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    return x, (x @ torch.randn(4, 3, generator=generator)).argmax(1)


def _loader(x, y, batch_size, broken=(), shuffle=False):
    return make_loader(Samples(x, y, broken), batch_size=batch_size, shuffle=shuffle, workers=0, seed=0)


def _model():
    torch.manual_seed(0)
    return nn.Linear(4, 3)


def _trainer(model, loader, optimizer, scheduler=None, **fields) -> Trainer:
    return Trainer(model, loader, None, nn.CrossEntropyLoss(), optimizer, FP32.scaler(), scheduler, scheduler is not None,
                   device=CPU, precision=FP32, **fields)


def _epoch(model, loader, lr=0.1, **fields):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)  # no momentum: a step is -lr * gradient
    return train_one_epoch(_trainer(model, loader, optimizer, **fields))


def _flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_epochs_lower_the_loss_and_count_only_the_images_that_decoded():
    x, y = _data()
    model, loader = _model(), _loader(x, y, 8, broken=[3], shuffle=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    passes = [train_one_epoch(_trainer(model, loader, optimizer)) for _ in range(5)]
    losses = [p.loss for p in passes]
    assert all(a > b for a, b in zip(losses, losses[1:])) and losses[-1] < losses[0] / 2
    assert passes[-1].accuracy > passes[0].accuracy
    assert all(p.images == 63 and p.skipped == ["3.png: truncated"] for p in passes)
    with pytest.raises(DataError):
        _epoch(_model(), _loader(x[:4], y[:4], 2, broken=range(4)))


def test_accumulating_two_batches_is_one_step_on_a_batch_twice_the_size():
    x, y = _data(8)
    accumulated, whole = _model(), _model()
    start = _flat(whole)
    _epoch(accumulated, _loader(x, y, 4), accumulate=2)
    _epoch(whole, _loader(x, y, 8))
    assert not torch.allclose(_flat(whole), start)
    torch.testing.assert_close(_flat(accumulated), _flat(whole))


def test_the_optimizer_steps_every_accumulate_batches_and_after_the_last():
    x, y = _data(20)
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    counter = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)  # counts the per-batch schedule's steps
    train_one_epoch(_trainer(model, _loader(x, y, 4), optimizer, counter, accumulate=2))
    assert counter.last_epoch == 3  # 5 batches: after the 2nd, the 4th and the 5th


def test_grad_clip_bounds_the_step():
    x, y = _data(8)
    x = x * 1000  # a huge gradient
    clipped, free = _model(), _model()
    start = _flat(free)
    _epoch(clipped, _loader(x, y, 8), lr=1.0, grad_clip=0.5)
    _epoch(free, _loader(x, y, 8), lr=1.0)
    assert (_flat(free) - start).norm() > 10 * 0.5
    assert (_flat(clipped) - start).norm().item() == pytest.approx(0.5, rel=1e-4)


def test_a_non_finite_loss_stops_training_with_an_error():
    x, y = _data(8)
    x[5, 0] = float("nan")
    with pytest.raises(TlcliError, match="loss"):
        _epoch(_model(), _loader(x, y, 4))


def test_train_step_returns_the_loss_and_logits_and_leaves_the_scaled_gradient():
    x, y = _data(8)
    model, reference = _model(), _model()
    loss, logits = train_step(model, x, y, nn.CrossEntropyLoss(), FP32.scaler(), precision=FP32, accumulate=2)
    expected = F.cross_entropy(reference(x), y)
    expected.backward()
    assert loss.item() == pytest.approx(expected.item()) and not loss.requires_grad
    torch.testing.assert_close(logits, reference(x).detach())
    for mine, theirs in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(mine.grad, theirs.grad / 2)  # divided by accumulate
    with pytest.raises(TlcliError, match="loss"):
        train_step(model, torch.full_like(x, float("nan")), y, nn.CrossEntropyLoss(), FP32.scaler(), precision=FP32)


def test_evaluate_is_the_loss_and_accuracy_over_every_readable_image():
    x, y = _data(24, seed=1)
    model = _model()
    result = evaluate(model, _loader(x, y, 5, broken=[7]), nn.CrossEntropyLoss(), device=CPU, precision=FP32, collect=True)
    good = torch.tensor([i for i in range(24) if i != 7])
    with torch.no_grad():
        logits = model(x[good])
    assert result.images == 23 and result.skipped == ["7.png: truncated"]
    assert result.loss == pytest.approx(F.cross_entropy(logits, y[good]).item(), rel=1e-6)
    assert result.accuracy == pytest.approx((logits.argmax(1) == y[good]).float().mean().item())
    torch.testing.assert_close(result.logits, logits)
    assert torch.equal(result.labels, y[good]) and torch.equal(result.indices, good)
    assert all(p.grad is None for p in model.parameters()) and not model.training
