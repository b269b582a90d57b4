"""From an ``ImageSet`` to batches of tensors.

An image that fails to decode mid-run (a truncated file the header check could not see) is
dropped from its batch and its name travels with the batch, so the training loop can warn
and count it, also when the decoding happened in a worker process.
"""

from __future__ import annotations

from collections.abc import Callable
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler, SequentialSampler

from tlcli.data.images import BadImageError
from tlcli.data.imagesets import ImageSet


class TransformedImages(Dataset):
    def __init__(self, images: ImageSet, transform: Callable, label_map: list[int] | None = None, *, draft_size: int | None = None):
        self.images = images
        self.transform = transform
        self.draft_size = draft_size  # the preset's resize size: see ``load_image``
        # Maps the data's class indices to the model's (evaluation data may order classes differently).
        self.label_map = label_map

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        label = self.images.labels[index]
        if self.label_map is not None:
            label = self.label_map[label]
        try:
            return self.transform(self.images.load(index, draft_size=self.draft_size)), label, index, None
        except BadImageError as exc:
            return None, label, index, f"{self.images.name(index)}: {exc}"


@dataclass
class Batch:
    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor  # positions in the ImageSet, to name mistakes later
    skipped: list[str]  # "path: reason" of images that failed to decode


def collate(samples: list) -> Batch:
    good = [s for s in samples if s[3] is None]
    skipped = [s[3] for s in samples if s[3] is not None]
    if not good:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), skipped)
    return Batch(
        torch.stack([s[0] for s in good]),
        torch.tensor([s[1] for s in good], dtype=torch.long),
        torch.tensor([s[2] for s in good], dtype=torch.long),
        skipped,
    )


def seed_worker(worker_id: int) -> None:
    """DataLoader workers: derive python and numpy seeds from the seed torch gave this worker."""
    worker_seed = torch.initial_seed() % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)


class ShardSampler(Sampler):
    """Positions rank, rank + world, rank + 2 world, ...: the processes together read every
    image exactly once, where DistributedSampler would repeat some to even the shards out."""

    def __init__(self, length: int, rank: int, world: int):
        self.positions = range(rank, length, world)

    def __len__(self) -> int:
        return len(self.positions)

    def __iter__(self):
        return iter(self.positions)


def make_sampler(dataset: Dataset, *, shuffle: bool, generator: torch.Generator) -> Sampler:
    """Under torchrun (a process group initialised), each process reads its own shard: in
    training a shuffled one of equal length (the processes must take as many steps), elsewhere
    an unpadded one, so that metrics summed over the processes count each image once."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        if not shuffle:
            return ShardSampler(len(dataset), rank, world)
        return DistributedSampler(dataset, num_replicas=world, rank=rank, seed=int(generator.initial_seed()))
    return RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    workers: int,
    seed: int,
    pin_memory: bool = False,
    persistent: bool = True,
) -> DataLoader:
    """``persistent`` keeps workers between epochs (faster), at the price of their random
    streams running on across epochs, so a resumed run's augmentation differs; deterministic
    runs turn it off."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=make_sampler(dataset, shuffle=shuffle, generator=generator),
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        worker_init_fn=seed_worker if workers else None,
        generator=generator,
        persistent_workers=persistent and workers > 0,
    )


def reseed_loader(loader: DataLoader, seed: int) -> None:
    """Make this epoch's order (and the workers' augmentation seeds) a function of ``seed`` alone."""
    loader.generator.manual_seed(seed)
    if isinstance(loader.sampler, DistributedSampler):  # it draws its order from (its seed + epoch), not the generator
        loader.sampler.set_epoch(seed)


def decoded_batches(loader: DataLoader, *, threads: int = 1):
    """``loader``'s batches; with ``threads`` > 1 and no worker processes of its own, the images
    of each batch are decoded by that many threads at once (PIL releases the GIL while it
    decodes and resizes): 1.45x on 2 cores. Only for datasets without random transforms, whose
    draws threads would make in no fixed order. Decoding does not overlap the model's work on
    the previous batch: on 2 cores the two only compete for them (no steady gain, measured)."""
    if threads <= 1 or loader.num_workers:
        yield from loader
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="tlcli-decode") as pool:
        for indices in loader.batch_sampler:
            yield loader.collate_fn(list(pool.map(loader.dataset.__getitem__, indices)))
