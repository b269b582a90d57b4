"""Optimisers, learning-rate schedules and the loss, built from ``OptimConfig``."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence

import torch
from torch import nn

from tlcli.core.config import DEFAULT_LR, HEAD_ONLY_LR, OPTIMIZERS, SCHEDULES, OptimConfig
from tlcli.core.errors import TlcliError
from tlcli.models.heads import within_head


def parameter_groups(model: nn.Module, head_name: str, config: OptimConfig) -> list[dict]:
    """Trainable parameters, with the backbone at ``backbone_lr_mult`` times the head's rate
    (``config.lr``, or by default HEAD_ONLY_LR when only the head trains, else DEFAULT_LR)."""
    head, backbone = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (head if within_head(name, head_name) else backbone).append(parameter)
    if not head and not backbone:
        raise TlcliError("every parameter is frozen: nothing to train (check the freeze policy)")
    if config.lr is not None and config.lr <= 0:
        raise TlcliError(f"the learning rate must be positive, got {config.lr}")
    lr = config.lr if config.lr is not None else DEFAULT_LR if backbone else HEAD_ONLY_LR
    groups = [{"params": head, "lr": lr, "name": "head"}]
    if backbone:
        groups.append({"params": backbone, "lr": lr * config.backbone_lr_mult, "name": "backbone"})
    return [group for group in groups if group["params"]]


def build_optimizer(groups: list[dict], config: OptimConfig, *, fused: bool = False) -> torch.optim.Optimizer:
    """For ``groups`` from ``parameter_groups``, each with its own learning rate."""
    if config.optimizer not in OPTIMIZERS:
        raise TlcliError(f"unknown optimizer '{config.optimizer}'; choose one of {', '.join(OPTIMIZERS)}")
    common = {"lr": groups[0]["lr"], "weight_decay": config.weight_decay}
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=config.momentum, nesterov=config.nesterov, **common)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, momentum=config.momentum, **common)
    optimizer_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(groups, fused=fused or None, **common)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, *, epochs: int, steps_per_epoch: int, maximize: bool = False
):
    """Returns (scheduler or None, whether it steps per batch rather than per epoch).

    ``maximize``: the monitored value is an accuracy (plateau then waits for it to stop rising).
    """
    if config.schedule not in SCHEDULES:
        raise TlcliError(f"unknown schedule '{config.schedule}'; choose one of {', '.join(SCHEDULES)}")
    if config.schedule == "none":
        return None, False
    if config.schedule == "cosine":
        warmup = config.warmup_epochs

        def factor(epoch: int) -> float:
            if epoch < warmup:
                return (epoch + 1) / (warmup + 1)
            progress = (epoch - warmup) / max(1, epochs - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor), False
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma), False
    if config.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max" if maximize else "min", factor=config.gamma, patience=2
        ), False
    max_lrs = [group["lr"] for group in optimizer.param_groups]
    total = max(1, epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lrs, total_steps=total), True


def balanced_class_weights(labels: Sequence[int], num_classes: int) -> torch.Tensor:
    """scikit-learn's "balanced": n_samples / (n_classes * count of the class)."""
    counts = Counter(labels)
    total = len(labels)
    present = sum(1 for c in range(num_classes) if counts.get(c))
    return torch.tensor(
        [total / (present * counts[c]) if counts.get(c) else 0.0 for c in range(num_classes)], dtype=torch.float32
    )


def build_criterion(config: OptimConfig, train_labels: Sequence[int], num_classes: int) -> nn.CrossEntropyLoss:
    if config.class_weights not in ("none", "balanced"):
        raise TlcliError(f"unknown class weights '{config.class_weights}'; choose none or balanced")
    weight = balanced_class_weights(train_labels, num_classes) if config.class_weights == "balanced" else None
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)


def continue_schedule(scheduler, optimizer: torch.optim.Optimizer, *, total_steps: int) -> None:
    """After a resumed run loads its scheduler state, apply the horizon of its (maybe raised) --epochs."""
    if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
            group["lr"] = base * factor(scheduler.last_epoch)
    elif isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR) and total_steps > scheduler.total_steps:
        # Stretch the warm-up and anneal phases to the new length, or the anneal would run backwards.
        old = scheduler.total_steps
        for phase in scheduler._schedule_phases:
            phase["end_step"] = (phase["end_step"] + 1) * total_steps / old - 1
        scheduler.total_steps = total_steps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # get_lr outside step() warns; here it is the point
            for group, lr in zip(optimizer.param_groups, scheduler.get_lr()):
                group["lr"] = lr
