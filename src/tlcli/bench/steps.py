"""tlcli's own training step, timed in a fresh process: ``python -m tlcli.bench.steps MODE``.

Modes (each prints one JSON object):
  pipeline  one epoch through the real loader over the decoded-image cache, against the same
            batches already in memory (the model-bound limit)
  step      tlcli's step on batches in memory, with its default settings, for comparison with
            the minimal reference loop (``tlcli.bench.reference step``)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

from tlcli.bench.reference import _peak_rss_bytes, _rss_bytes
from tlcli.engine.host import allocator_tuning, cap_threads
from tlcli.engine.observer import Observer


class _StepTimes(Observer):
    def __init__(self) -> None:
        self.stamps = [time.perf_counter()]

    def batch_end(self, done: int, loss: float, accuracy: float, images_per_s: float) -> None:
        self.stamps.append(time.perf_counter())

    def steady(self, warmup: int) -> float:
        """Median step time after ``warmup`` steps."""
        steps = [b - a for a, b in zip(self.stamps, self.stamps[1:])][warmup:]
        return statistics.median(steps)


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


def _epoch(model, batches, criterion, optimizer, precision, observer=None):
    import torch

    from tlcli.engine.loop import train_one_epoch

    scaler = precision.scaler()
    return train_one_epoch(
        model, batches, criterion, optimizer, scaler, device=torch.device("cpu"), precision=precision,
        channels_last=True, observer=observer,
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


def step(args) -> dict:
    """tlcli's step with its defaults (tuned allocator, channels-last, uint8 input normalised in
    the model) on batches in memory: images/s and peak memory growth."""
    allocator_tuning()
    cap_threads()
    import torch

    from tlcli.data.loading import Batch
    from tlcli.models.inputs import UInt8Input

    _, built, model, optimizer, criterion, precision = _setup(args, freeze="none", augment=None)
    network = UInt8Input(model, built.preprocess)
    generator = torch.Generator().manual_seed(args.seed)
    pixels = torch.randint(0, 256, (args.batch_size, 3, args.size, args.size), dtype=torch.uint8, generator=generator)
    batch = Batch(pixels, torch.arange(args.batch_size) % 10, torch.arange(args.batch_size), [])
    before = _rss_bytes()
    observer = _StepTimes()
    _epoch(network, [batch] * (args.warmup + args.steps), criterion, optimizer, precision, observer)
    return {"images_per_s": args.batch_size / observer.steady(args.warmup), "peak_bytes": _peak_rss_bytes() - before}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tlcli.bench.steps")
    parser.add_argument("mode", choices=["pipeline", "step"])
    parser.add_argument("--data")
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)  # rounds of both sides, interleaved (target 3)
    args = parser.parse_args()
    print(json.dumps({"pipeline": pipeline, "step": step}[args.mode](args)))


if __name__ == "__main__":
    main()
