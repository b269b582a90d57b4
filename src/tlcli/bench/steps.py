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
from dataclasses import replace

from tlcli.bench.reference import minimal_step, timed_steps
from tlcli.engine.host import allocator_tuning, cap_threads
from tlcli.engine.observer import Observer


def _setup(args, *, freeze: str, augment):
    import torch

    from tlcli.config import AugmentConfig, DataConfig, ModelConfig, RunConfig, TrainConfig
    from tlcli.engine.device import resolve_precision, seed_everything
    from tlcli.engine.optim import build_criterion, build_optimizer, parameter_groups
    from tlcli.models.registry import build_model

    seed_everything(args.seed)
    config = TrainConfig(
        data=DataConfig(source=args.data or "digits"),
        model=ModelConfig(arch=args.arch, weights="none", freeze=freeze, input_size=args.size),
        augment=augment or AugmentConfig(),
        run=RunConfig(batch_size=args.batch_size, cache_features="off", cache_images="memory", workers=0),
    )
    built = build_model(config.model, num_classes=10)
    model = built.model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(parameter_groups(model, built.head_name, config.optim), config.optim)
    precision = resolve_precision("off", torch.device("cpu"))
    return config, built, model, optimizer, build_criterion(config.optim, [0], 10), precision


def _epoch(model, batches, criterion, optimizer, precision):
    import torch

    from tlcli.engine.loop import train_one_epoch

    scaler = precision.scaler()
    return train_one_epoch(
        model, batches, criterion, optimizer, scaler, device=torch.device("cpu"), precision=precision,
        channels_last=True,
    )


def pipeline(args) -> dict:
    """Seconds per epoch through the real cached pipeline and through the same batches in memory."""
    allocator_tuning()
    cap_threads()
    import torch

    from tlcli.config import AugmentConfig
    from tlcli.data.sources import load_data
    from tlcli.pipeline import build_inputs

    config, built, model, optimizer, criterion, precision = _setup(args, freeze="backbone", augment=AugmentConfig(hflip=True))
    data = load_data(replace(config.data, val_split=0.0, test_split=0.0))
    inputs = build_inputs(
        data, built, model, config, device=torch.device("cpu"), precision=precision, channels_last=True, observer=Observer(),
    )
    loader = inputs.train_loader
    in_memory = list(loader)
    timings: dict[str, list[float]] = {"pipeline": [], "memory": []}
    for _ in range(args.repeats):
        for name, batches in (("pipeline", loader), ("memory", in_memory)):
            started = time.perf_counter()
            _epoch(inputs.model, batches, criterion, optimizer, precision)
            timings[name].append(time.perf_counter() - started)
    # The first round warms the allocator and the caches up; the best of the rest is the floor.
    best = {name: min(values[1:] or values) for name, values in timings.items()}
    return {"pipeline_seconds": best["pipeline"], "memory_seconds": best["memory"], "images": len(data.splits["train"])}


def _our_step(args) -> Callable[[], object]:
    """tlcli's training step with its defaults (channels-last, uint8 input normalised in the
    model) on a batch in memory, as a function to call: an epoch of one batch through the loop."""
    import torch

    from tlcli.data.loading import Batch
    from tlcli.models.inputs import UInt8Input

    _, built, model, optimizer, criterion, precision = _setup(args, freeze="none", augment=None)
    network = UInt8Input(model, built.preprocess)
    generator = torch.Generator().manual_seed(args.seed)
    pixels = torch.randint(0, 256, (args.batch_size, 3, args.size, args.size), dtype=torch.uint8, generator=generator)
    batch = Batch(pixels, torch.arange(args.batch_size) % 10, torch.arange(args.batch_size), [])
    return lambda: _epoch(network, [batch], criterion, optimizer, precision)


def step(args) -> dict:
    """tlcli's step alone in this process, with its process settings: images/s and peak memory growth."""
    allocator_tuning()
    cap_threads()
    return timed_steps(_our_step(args), batch_size=args.batch_size, warmup=args.warmup, steps=args.steps)


def paired(args) -> dict:
    """tlcli's step and the minimal loop's with the same settings (tlcli's tuned allocator and
    threads, channels-last), each on its own model, alternating in this one process: both sides
    see the same moments of a noisy machine, where separate processes minutes apart differ by
    more than the 5 % that target 4 allows."""
    allocator_tuning()
    cap_threads()
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
