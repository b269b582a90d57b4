"""tlcli's own training step, timed in a fresh process: ``python -m tlcli.bench.steps MODE``.

Modes (each prints one JSON object):
  pipeline  one epoch through the real loader over the decoded-image cache, against the same
            batches already in memory (the model-bound limit)
  step      tlcli's step alone, on a batch in memory, with its default settings: peak memory
            for comparison with the minimal reference loop's (``tlcli.bench.reference step``)
  paired    tlcli's step and the minimal loop's, alternating in one process: images/s of each
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from tlcli.bench.reference import minimal_step, timed_steps


def _prepared(args, *, freeze: str, augment=None, cache_images: str = "off"):
    """What ``tlcli train`` builds for these settings (``tlcli.run.build``), on the CPU in fp32."""
    from tlcli.core.config import AugmentConfig, DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
    from tlcli.run.build import prepare

    config = TrainConfig(
        data=DataConfig(source=args.data or "digits", val_split=0.0, test_split=0.0, seed=args.seed),
        model=ModelConfig(arch=args.arch, weights="none", freeze=freeze, input_size=args.size),
        augment=augment or AugmentConfig(),
        optim=OptimConfig(head_fit="epochs"),
        run=RunConfig(batch_size=args.batch_size, device="cpu", amp="off", channels_last=True, seed=args.seed,
                      cache_features="off", cache_images=cache_images, workers=0),
    )
    return prepare(config)


def _epoch(prepared, batches):
    from dataclasses import replace

    from tlcli.engine.loop import train_one_epoch

    return train_one_epoch(replace(prepared.trainer, train_loader=batches))


def pipeline(args) -> dict:
    """Seconds per epoch through the real cached pipeline and through the same batches in memory."""
    from tlcli.core.config import AugmentConfig

    prepared = _prepared(args, freeze="backbone", augment=AugmentConfig(hflip=True), cache_images="memory")
    loader = prepared.trainer.train_loader
    in_memory = list(loader)
    timings: dict[str, list[float]] = {"pipeline": [], "memory": []}
    for _ in range(args.repeats):
        for name, batches in (("pipeline", loader), ("memory", in_memory)):
            started = time.perf_counter()
            _epoch(prepared, batches)
            timings[name].append(time.perf_counter() - started)
    # The first round warms the allocator and the caches up; the best of the rest is the floor.
    best = {name: min(values[1:] or values) for name, values in timings.items()}
    return {"pipeline_seconds": best["pipeline"], "memory_seconds": best["memory"], "images": len(prepared.data.splits["train"])}


def _our_step(args) -> Callable[[], object]:
    """tlcli's training step with its defaults (channels-last, uint8 input normalised in the
    model) on a batch in memory, as a function to call: an epoch of one batch through the loop."""
    import torch

    from tlcli.data.loading import Batch

    prepared = _prepared(args, freeze="none")
    generator = torch.Generator().manual_seed(args.seed)
    pixels = torch.randint(0, 256, (args.batch_size, 3, args.size, args.size), dtype=torch.uint8, generator=generator)
    batch = Batch(pixels, torch.arange(args.batch_size) % 10, torch.arange(args.batch_size), [])
    return lambda: _epoch(prepared, [batch])


def step(args) -> dict:
    """tlcli's step alone in this process, with its process settings (``prepare`` tunes the
    allocator and threads first, as for ``tlcli train``): images/s and peak memory growth."""
    return timed_steps(_our_step(args), batch_size=args.batch_size, warmup=args.warmup, steps=args.steps)


def paired(args) -> dict:
    """tlcli's step and the minimal loop's with the same settings (tlcli's tuned allocator and
    threads, channels-last), each on its own model, alternating in this one process: both sides
    see the same moments of a noisy machine, where separate processes minutes apart differ by
    more than the 5 % that target 4 allows. ``prepare`` tunes the process before either side
    is built."""
    ours = _our_step(args)
    theirs = minimal_step(arch=args.arch, batch_size=args.batch_size, size=args.size, seed=args.seed, channels_last=True)
    times: dict[str, list[float]] = {"minimal": [], "tlcli": []}
    sides = [("minimal", theirs), ("tlcli", ours)]
    for index in range(args.warmup + args.steps):
        for name, one_step in sides if index % 2 else sides[::-1]:  # neither always goes first
            started = time.perf_counter()
            one_step()
            times[name].append(time.perf_counter() - started)
    return {f"{name}_images_per_s": args.batch_size / statistics.median(values[args.warmup:]) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tlcli.bench.steps")
    parser.add_argument("mode", choices=["pipeline", "step", "paired"])
    parser.add_argument("--data")
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)  # rounds of both sides, interleaved (target 3)
    args = parser.parse_args()
    print(json.dumps({"pipeline": pipeline, "step": step, "paired": paired}[args.mode](args)))


if __name__ == "__main__":
    main()
