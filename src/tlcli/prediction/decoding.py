"""Decoding images for ``predict`` on worker processes while the model runs, in input order and
in bounded memory.

The items are read lazily by the main process and handed out a batch at a time through a
``DataLoader`` whose batch sampler is the item stream itself: the loader keeps at most
``prefetch`` batches per worker in flight and returns them in order, so memory depends on the
batch size and the workers, never on how many images there are.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from tlcli.data.images import BadImageError, load_image, open_image_bytes
from tlcli.core.errors import TlcliError
from tlcli.core.host import available_cores
from tlcli.prediction.inputs import Item

PREFETCH = 2  # batches decoded ahead, per worker


def decoding_workers() -> int:
    """The default: one process per core beyond the first, at least one, at most eight."""
    return max(1, min(8, available_cores() - 1))


@dataclass
class DecodedBatch:
    names: list[str]
    images: torch.Tensor | None  # the readable items' tensors, stacked in order; None when none was
    errors: list[str | None]  # per item: why it could not be read, or None


class _Decoder(Dataset):
    """Indexed by the items themselves: the batch sampler hands them to the workers."""

    def __init__(self, transform: Callable, draft_size: int | None):
        self.transform, self.draft_size = transform, draft_size

    def __getitem__(self, item: Item) -> tuple[str, torch.Tensor | str]:
        return item.name, self._decode(item)

    def _decode(self, item: Item) -> torch.Tensor | str:
        if item.error is not None:
            return item.error
        try:
            if isinstance(item.source, bytes):
                image = open_image_bytes(item.source, draft_size=self.draft_size)
            else:
                image = load_image(Path(item.source), draft_size=self.draft_size)
            return self.transform(image)
        except BadImageError as exc:
            return str(exc)
        except OSError as exc:
            return f"cannot be read: {exc.strerror or exc}"


def _batches(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    while batch := list(islice(items, size)):
        yield batch


def _stack(decoded: list[tuple[str, torch.Tensor | str]]) -> DecodedBatch:
    tensors = [result for _, result in decoded if isinstance(result, torch.Tensor)]
    return DecodedBatch(
        [name for name, _ in decoded], torch.stack(tensors) if tensors else None,
        [None if isinstance(result, torch.Tensor) else result for _, result in decoded],
    )


class _Sampler:
    """The loader's batch sampler: the item stream itself, read by the main process as needed."""

    def __init__(self, batches: Iterator[list[Item]]):
        self.batches = batches

    def __iter__(self) -> Iterator[list[Item]]:
        return self.batches


def decoded_batches(items: Iterator[Item], *, transform: Callable, draft_size: int | None, batch_size: int, workers: int) -> Iterator[DecodedBatch]:
    """Batches of decoded images in input order; unreadable items carry their error instead."""
    decoder = _Decoder(transform, draft_size)
    first = list(islice(items, batch_size + 1))
    if len(first) <= batch_size:  # one batch: a worker process would only add its start-up
        workers = 0
    batches = _batches(chain(first, items), batch_size)
    if workers == 0:
        yield from (_stack([decoder[item] for item in batch]) for batch in batches)
        return
    loader = DataLoader(decoder, batch_sampler=_Sampler(batches), num_workers=workers, prefetch_factor=PREFETCH, collate_fn=_stack,
                        worker_init_fn=_quiet_worker)
    running = iter(loader)
    try:
        yield from running
    except RuntimeError as exc:  # the loader's own report of a worker that died (the OOM killer, a kill -9)
        if "DataLoader worker" not in str(exc):
            raise
        raise TlcliError(f"a decoding worker died ({str(exc).splitlines()[0][:200]}); go on with --resume, or use --workers 0") from None
    finally:
        _stop(running)


def _stop(running) -> None:
    """The loader's own shutdown (each worker asked to end, then waited for a few seconds); a
    worker still decoding after that (a file on a hung network share) is killed, since the
    termination signals the loader would send it are ignored."""
    workers = list(getattr(running, "_workers", ()))
    shutdown = getattr(running, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
    for worker in workers:
        if worker.is_alive():
            worker.kill()


def _quiet_worker(worker_id: int) -> None:
    """Termination signals are the main process's to handle: it stops the workers in order. And
    when it is gone, the thread that hands it tensors must not print a traceback about it."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)
    os.nice(10)  # decoding yields to the model: with few cores, the forward pass comes first
    previous = sys.excepthook  # what multiprocessing's resource sharer thread reports through

    def excepthook(kind, value, traceback) -> None:
        if not issubclass(kind, (ConnectionError, EOFError)):
            previous(kind, value, traceback)

    sys.excepthook = excepthook
