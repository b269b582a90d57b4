"""Everything that changes under ``torchrun``, in one place.

Today tlcli runs one process; these three seams are where DistributedDataParallel plugs in:
the sampler that shards data, the rule that only rank 0 writes files, and the reduction of
metric sums across processes.
"""

from __future__ import annotations

import os

import torch
from torch.utils.data import Dataset, RandomSampler, Sampler, SequentialSampler


def rank() -> int:
    return torch.distributed.get_rank() if _active() else int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Only this process writes checkpoints, logs and plots."""
    return rank() == 0


def _active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def make_sampler(dataset: Dataset, *, shuffle: bool, generator: torch.Generator) -> Sampler:
    if _active():
        from torch.utils.data import DistributedSampler

        return DistributedSampler(dataset, shuffle=shuffle, seed=int(generator.initial_seed()))
    return RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)


def reduce_sums(values: torch.Tensor) -> torch.Tensor:
    """Sum metric accumulators (loss sums, correct counts, sample counts) over all processes."""
    if _active():
        values = values.clone()
        torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.SUM)
    return values
