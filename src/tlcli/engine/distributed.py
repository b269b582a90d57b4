"""What changes under ``torchrun``: the process group, the rule that only rank 0 writes files,
and the collectives that keep every process's view of a run the same (metric sums, rank 0's
outcome). The samplers that give each process its shard live with the loaders
(``data.loading.make_sampler``).

torchrun describes the job in the environment (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR...);
``process_group`` reads it. Outside torchrun every function here is the one-process identity.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import torch
from torch import nn

from tlcli.core.errors import TlcliError
from tlcli.core.host import launched

T = TypeVar("T")
# How long a process waits at a collective for the others. Long enough for rank 0 to write a
# large checkpoint and plot while the others wait; short enough that a rank stuck for good (a
# deadlock torchrun cannot see, a hung file system) ends the job instead of holding GPUs forever.
TIMEOUT = timedelta(minutes=5)


def world_size() -> int:
    return torch.distributed.get_world_size() if active() else int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return torch.distributed.get_rank() if active() else int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Only this process writes checkpoints, logs and plots."""
    return rank() == 0


def active() -> bool:
    """A process group is set up: collectives reach the other processes."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


@contextlib.contextmanager
def process_group(device: str) -> Iterator[None]:
    """Under torchrun, join the job for the duration: NCCL when the processes train on CUDA
    (each on GPU LOCAL_RANK), Gloo on the CPU. Outside torchrun, or inside a group already set
    up (a command that trains several runs), nothing happens."""
    if not launched() or active():
        yield
        return
    if device == "mps":
        raise TlcliError("training in several processes runs on CUDA or the CPU, not on mps")
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """Each process of a CUDA job has its own GPU, the one torchrun numbers LOCAL_RANK."""
    if active() and device.type == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return device


def wrap(model: nn.Module, device: torch.device, *, sync_bn: bool) -> nn.Module:
    """``model`` in DistributedDataParallel, which averages the gradients of its trainable
    parameters over the processes during backward (``model`` itself when nothing trains, or
    in one process). ``sync_bn``: BatchNorm layers that train compute their batch statistics
    over every process's batch (SyncBatchNorm, CUDA only); the freeze policy still decides which
    ones train."""
    if not active() or not any(parameter.requires_grad for parameter in model.parameters()):
        return model
    if sync_bn:
        if device.type != "cuda":
            raise TlcliError("--sync-bn needs CUDA devices (SyncBatchNorm does not run on the CPU); leave it out")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside DistributedDataParallel. Evaluation runs it: DDP's forward broadcasts
    buffers, a collective that uneven validation shards would leave some process waiting at."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _backend_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.distributed.get_backend() == "nccl" else torch.device("cpu")


def reduce_sums(values: torch.Tensor) -> torch.Tensor:
    """``values`` (metric sums, shards filled with zeros elsewhere) summed over all processes,
    on ``values``' device; ``values`` itself in one process."""
    if not active():
        return values
    summed = values.to(_backend_device(), copy=True)
    torch.distributed.all_reduce(summed, op=torch.distributed.ReduceOp.SUM)
    return summed.to(values.device)


def gather_objects(value: Any) -> list[Any]:
    """Every process's ``value`` (small, picklable), in rank order."""
    if not active():
        return [value]
    values: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(values, value)
    return values


def on_main(action: Callable[[], T]) -> T:
    """``action()`` on rank 0 alone (a check or a write before the run's collectives), its result
    (small, picklable) or its exception shared with every process: a rank-0 failure, such as a
    locked run folder, ends every process with the same error instead of leaving them waiting."""
    result: Any = None
    error: Exception | None = None
    if is_main_process():
        try:
            result = action()
        except Exception as exc:  # shared, then raised on every rank
            error = exc
    if active():
        shared = [result, error]
        torch.distributed.broadcast_object_list(shared, src=0)
        result, error = shared
    if error is not None:
        raise error
    return result
