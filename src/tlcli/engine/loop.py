"""The training loop's pieces: ``train_one_epoch``, ``evaluate``, and what comes before and after an
epoch (``start_epoch``, ``end_epoch``); ``tlcli.run.story.Run.fit`` strings them together.

Mixed precision has no branches: ``autocast`` and ``GradScaler`` are simply disabled when
running in fp32. Metric sums stay on the device and go through ``reduce_sums``, so that they are
right under DDP too.
"""

from __future__ import annotations

import contextlib
import math
import time

import torch
from torch import nn
from torch.utils.data import DataLoader

from tlcli.data.loading import reseed_loader
from tlcli.engine.device import Precision
from tlcli.engine.distributed import active, gather_objects, reduce_sums
from tlcli.engine.observer import Observer
from tlcli.engine.state import Pass, Progress, Trainer
from tlcli.core.errors import DataError, TlcliError
from tlcli.models.freeze import set_train_mode

# How often the epoch's sums are read back from the device for the progress display: each read
# waits for the device to finish the queued steps, so not every batch.
PROGRESS_EVERY_S = 0.5


def batch_to_device(batch, device: torch.device, channels_last: bool):
    memory_format = torch.channels_last if channels_last else torch.preserve_format
    images = batch.images.to(device, non_blocking=True, memory_format=memory_format)
    return images, batch.labels.to(device, non_blocking=True)


def train_step(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, criterion: nn.Module, scaler: torch.amp.GradScaler, *,
    precision: Precision, accumulate: int = 1, check_finite: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, loss and (scaled) backward of one batch; returns the loss and the logits. The
    optimiser steps in ``train_one_epoch``, every ``accumulate`` batches. ``check_finite`` reads
    the loss back (a wait for the device); ``train_one_epoch`` checks it later, on the device."""
    with precision.autocast():
        logits = model(images)
        loss = criterion(logits, labels)
    if check_finite:
        _raise_if_not_finite(loss)
    scaler.scale(loss / accumulate).backward()
    return loss.detach(), logits.detach()


def _raise_if_not_finite(loss: torch.Tensor) -> None:
    if not torch.isfinite(loss):
        raise TlcliError(f"the loss became {loss.item()}; lower the learning rate or clip gradients")


def train_one_epoch(t: Trainer, *, observer: Observer | None = None) -> Pass:
    """One epoch of ``t.train_loader``, stepping ``t.optimizer`` every ``t.accumulate`` batches.
    The step never waits for the device: the loss and accuracy sums and the first non-finite
    loss stay there, read every PROGRESS_EVERY_S and at the end (a non-finite loss stops the
    epoch at the next read, with the error ``train_step`` would raise)."""
    set_train_mode(t.model, bn_train=t.bn_train, keep_norm_statistics=t.keep_norm_statistics)
    observer = observer or Observer()
    sums = torch.zeros(2, dtype=torch.float64, device=_sum_device(t.device))  # loss * n, correct
    non_finite = torch.zeros((), device=t.device)  # the first non-finite loss; 0 while there is none
    images, skipped = 0, []
    started = shown = time.perf_counter()
    t.optimizer.zero_grad(set_to_none=True)
    batches = len(t.train_loader)
    for step, batch in enumerate(t.train_loader, start=1):
        skipped += batch.skipped
        stepping = step % t.accumulate == 0 or step == batches
        if len(batch.labels):
            inputs, labels = batch_to_device(batch, t.device, t.channels_last)
            # Accumulating under DDP: gradients are averaged once, at the step, not every batch.
            with contextlib.nullcontext() if stepping or not hasattr(t.model, "no_sync") else t.model.no_sync():
                loss, logits = train_step(t.model, inputs, labels, t.criterion, t.scaler, precision=t.precision,
                                          accumulate=t.accumulate, check_finite=False)
            loss = loss.float()
            non_finite = torch.where(torch.isfinite(non_finite) & ~torch.isfinite(loss), loss, non_finite)
            sums += torch.stack([loss.to(sums) * len(labels), (logits.argmax(1) == labels).sum().to(sums)])
            images += len(labels)
        if stepping:
            if t.grad_clip:
                t.scaler.unscale_(t.optimizer)
                nn.utils.clip_grad_norm_(t.model.parameters(), t.grad_clip)
            t.scaler.step(t.optimizer)
            t.scaler.update()
            t.optimizer.zero_grad(set_to_none=True)
            if t.scheduler_per_batch:
                t.scheduler.step()
        if step == batches or time.perf_counter() - shown >= PROGRESS_EVERY_S:
            _raise_if_not_finite(non_finite)
            loss_sum, correct = sums.tolist()
            seen = max(images, 1)
            observer.batch_end(step, loss_sum / seen, correct / seen, images / (time.perf_counter() - started))
            shown = time.perf_counter()
    total = reduce_sums(torch.cat([sums, sums.new_tensor([images])])).tolist()
    if not total[2]:
        raise DataError(f"no training image of this epoch could be read ({len(skipped)} skipped); run 'tlcli data check'")
    return Pass(total[0] / total[2], total[1] / total[2], int(total[2]), time.perf_counter() - started, skipped)


def _sum_device(device: torch.device) -> torch.device:
    """float64 sums, exact over any epoch, where the device has float64 (MPS has not)."""
    return torch.device("cpu") if device.type == "mps" else device


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    criterion: nn.Module,
    *,
    device: torch.device,
    precision: Precision,
    channels_last: bool = False,
    collect: bool = False,
) -> Pass:
    """Loss and accuracy over ``loader``; with ``collect``, also every logit, label and index."""
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=_sum_device(device))  # loss * n, correct
    images, skipped = 0, []
    outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    started = time.perf_counter()
    for batch in loader:
        skipped += batch.skipped
        if not len(batch.labels):
            continue
        inputs, labels = batch_to_device(batch, device, channels_last)
        with precision.autocast():
            logits = model(inputs)
        logits = logits.float()
        loss = criterion(logits, labels)
        sums += torch.stack([loss.to(sums) * len(labels), (logits.argmax(1) == labels).sum().to(sums)])
        images += len(labels)
        if collect:
            outputs.append((logits.cpu(), batch.labels, batch.indices))
    # Each process read its unpadded shard: together, every image once, which the count checks.
    loss_sum, correct, count, unread = reduce_sums(torch.cat([sums, sums.new_tensor([images, len(skipped)])])).tolist()
    if active() and count + unread != len(loader.dataset):
        raise TlcliError(f"the processes evaluated {int(count + unread)} images of {len(loader.dataset)}; each must read its shard once")
    result = Pass(loss_sum / count if count else math.nan, correct / count if count else math.nan, int(count),
                  time.perf_counter() - started, skipped)
    if collect:
        outputs = [part for parts in gather_objects(outputs) for part in parts]
    if collect and outputs:
        result.logits, result.labels, result.indices = (torch.cat(parts) for parts in zip(*outputs))
    return result


def start_epoch(t: Trainer, epoch: int) -> None:
    """Each epoch reseeds from (seed, epoch), so a resumed run continues exactly as an
    uninterrupted one would have."""
    torch.manual_seed(t.seed * 1000 + epoch)
    reseed_loader(t.train_loader, t.seed * 1000 + epoch)


def end_epoch(t: Trainer, progress: Progress, trained: Pass, *, epoch: int, lr: float, observer: Observer) -> tuple[dict, bool]:
    """After an epoch's training: validation (of the moving average too), the history row
    (``epoch`` numbered across phases), where the run stands, the epoch's schedule step and early
    stopping. Returns the row and whether the epoch is the best so far."""
    validated = validate(t) if t.val_loader is not None else None
    for skipped in trained.skipped + (validated.skipped if validated else []):
        observer.warning(f"skipped unreadable image {skipped}")
    progress.epoch += 1
    progress.step += math.ceil(len(t.train_loader) / t.accumulate)
    row = _history_row(t, epoch, trained, validated, lr)
    if validated and t.average is not None:
        with t.average.swapped_in():
            averaged = validate(t)
        row.update(ema_val_loss=averaged.loss, ema_val_acc=averaged.accuracy)
    monitored, from_average = _monitored(row, t.monitor) if validated else (row["train_loss"], False)
    kind = t.monitor if validated else "train_loss"
    is_best = progress.improved(monitored, kind)
    if is_best:
        progress.best_metric, progress.best_epoch, progress.best_is_average = monitored, progress.epoch, from_average
    if progress.phase_best is None or progress.improved(monitored, kind, than=progress.phase_best):
        progress.phase_best, progress.epochs_without_improvement = monitored, 0
    else:
        progress.epochs_without_improvement += 1
    if t.scheduler is not None and not t.scheduler_per_batch:
        if isinstance(t.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            t.scheduler.step(row[t.monitor] if validated else monitored)  # the trained weights', not their average's
        else:
            t.scheduler.step()
    if t.patience and progress.epochs_without_improvement >= t.patience:
        progress.stopped_early = True
    return row, is_best


def validate(t: Trainer) -> Pass:
    """The trainer's model on its validation split, as every epoch measures it."""
    return evaluate(t.eval_model, t.val_loader, t.criterion, device=t.device, precision=t.precision, channels_last=t.channels_last)


def _monitored(row: dict, monitor: str) -> tuple[float, bool]:
    """The epoch's monitored value, and whether the moving average gave it (when it beat the weights)."""
    own, averaged = row[monitor], row.get(f"ema_{monitor}")
    if averaged is None or math.isnan(averaged) or averaged == own:
        return own, False
    better = averaged < own if monitor.endswith("loss") else averaged > own
    return (averaged, True) if better else (own, False)


def _history_row(trainer: Trainer, epoch: int, trained: Pass, validated: Pass | None, lr: float) -> dict:
    return {
        "phase": trainer.phase,
        "epoch": epoch,
        "train_loss": trained.loss,
        "train_acc": trained.accuracy,
        "val_loss": validated.loss if validated else math.nan,
        "val_acc": validated.accuracy if validated else math.nan,
        "val_images": validated.images if validated else 0,  # under torchrun too: the whole split, once
        "lr": lr,
        "seconds": trained.seconds + (validated.seconds if validated else 0.0),
        "images_per_s": trained.images / trained.seconds if trained.seconds else 0.0,
        "method": trainer.method,
    }
