"""What changes under ``torchrun`` for the engine: the rule that only rank 0 writes files, and
the reduction of metric sums across processes. (The sampler that gives each process its shard
lives with the loaders, in ``data.loading.make_sampler``.)
"""

from __future__ import annotations

import os

import torch


def rank() -> int:
    return torch.distributed.get_rank() if _active() else int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Only this process writes checkpoints, logs and plots."""
    return rank() == 0


def _active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def reduce_sums(values: torch.Tensor) -> torch.Tensor:
    """Sum metric accumulators (loss sums, correct counts, sample counts) over all processes."""
    if _active():
        values = values.clone()
        torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.SUM)
    return values
