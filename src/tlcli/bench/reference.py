"""The loops tlcli is measured against, written as the reports wrote them: plain PyTorch.

Run as ``python -m tlcli.bench.reference MODE ...`` in a fresh process, so that its process
settings are the defaults; it imports nothing from tlcli and prints one JSON object.
``minimal_step`` is also imported by ``tlcli.bench.steps paired``, which runs it beside
tlcli's step in one process with the same settings.

Modes:
  phase1  a frozen backbone, head trained for N epochs, PIL decode and backbone every epoch
  full    every layer trains; images/s of the last epoch, PIL decode every step
  step    the minimal loop on a batch already in memory (``--channels-last`` or not)
  predict the floor of a prediction: import torch, load the checkpoint, one forward

phase1 seeds exactly as tlcli does (model, head, data order, dropout), so the two runs see
the same batches and their accuracies can be compared.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import time


def _rss_bytes() -> int:
    with open("/proc/self/statm") as stream:
        return int(stream.read().split()[1]) * resource.getpagesize()


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _model(arch: str, classes: int, seed: int, weights: str | None = None):
    import torch
    import torchvision
    from torch import nn

    torch.manual_seed(seed)
    model = torchvision.models.get_model(arch, weights=None)
    # The last Linear is the head (EfficientNet: classifier.1, ResNet: fc).
    name = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, nn.Linear(getattr(parent, attr).in_features, classes))
    if weights:
        own = model.state_dict()
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict({k: v for k, v in state.items() if k in own and own[k].shape == v.shape}, strict=False)
    return model, model.get_submodule(name)


def _folder_loaders(root: str, batch_size: int, seed: int, size: int, resize: int, arch: str):
    import torch
    from torchvision import datasets, models, transforms

    # The weights' own preset, as the reports used it (EfficientNet: bicubic).
    interpolation = models.get_model_weights(arch).DEFAULT.transforms().interpolation
    transform = transforms.Compose([
        transforms.Resize(resize, interpolation=interpolation), transforms.CenterCrop(size), transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    train = datasets.ImageFolder(f"{root}/train", transform)
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True, generator=generator)
    if not os.path.isdir(f"{root}/val"):
        return train, loader, None
    val = torch.utils.data.DataLoader(datasets.ImageFolder(f"{root}/val", transform), batch_size=batch_size)
    return train, loader, val


def phase1(args) -> dict:
    import torch
    from torch import nn

    started = time.perf_counter()
    train, loader, val = _folder_loaders(args.data, args.batch_size, args.seed, args.size, args.resize, args.arch)
    model, head = _model(args.arch, len(train.classes), args.seed, args.weights)
    for parameter in model.parameters():
        parameter.requires_grad = False
    for parameter in head.parameters():
        parameter.requires_grad = True
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    criterion = nn.CrossEntropyLoss()
    val_acc = math.nan
    for epoch in range(1, args.epochs + 1):
        torch.manual_seed(args.seed * 1000 + epoch)
        loader.generator.manual_seed(args.seed * 1000 + epoch)
        model.train()
        for name, child in model.named_children():  # frozen BatchNorm keeps its statistics, as Keras does
            if not any(p.requires_grad for p in child.parameters()):
                child.eval()
        loss_sum = seen = 0
        for images, labels in loader:
            loss = criterion(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum, seen = loss_sum + loss.item() * len(labels), seen + len(labels)
        schedule.step()
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for images, labels in val:
                correct += (model(images).argmax(1) == labels).sum().item()
                total += len(labels)
        val_acc = correct / total
    return {"seconds": time.perf_counter() - started, "val_acc": val_acc, "train_loss": loss_sum / seen}


def full(args) -> dict:
    import torch
    from torch import nn

    train, loader, _ = _folder_loaders(args.data, args.batch_size, args.seed, args.size, args.resize, args.arch)
    model, _ = _model(args.arch, len(train.classes), args.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    criterion = nn.CrossEntropyLoss()
    model.train()
    for _ in range(args.epochs):
        started, seen = time.perf_counter(), 0
        for images, labels in loader:
            loss = criterion(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(labels)
        seconds = time.perf_counter() - started
    return {"images_per_s": seen / seconds}


def minimal_step(*, arch: str, batch_size: int, size: int, seed: int, channels_last: bool):
    """One training step of the minimal loop on a batch in memory, as a function to call."""
    import torch
    from torch import nn

    model, _ = _model(arch, 10, seed)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format).train()
    images = torch.randn(batch_size, 3, size, size).contiguous(memory_format=memory_format)
    labels = torch.arange(batch_size) % 10
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    criterion = nn.CrossEntropyLoss()

    def one_step() -> None:
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()

    return one_step


def timed_steps(one_step, *, batch_size: int, warmup: int, steps: int) -> dict:
    """Images/s (median step after ``warmup``) and peak memory growth of ``one_step``."""
    before = _rss_bytes()
    times = []
    for _ in range(warmup + steps):
        started = time.perf_counter()
        one_step()
        times.append(time.perf_counter() - started)
    return {"images_per_s": batch_size / statistics.median(times[warmup:]), "peak_bytes": _peak_rss_bytes() - before}


def step(args) -> dict:
    one_step = minimal_step(arch=args.arch, batch_size=args.batch_size, size=args.size, seed=args.seed, channels_last=args.channels_last)
    return timed_steps(one_step, batch_size=args.batch_size, warmup=args.warmup, steps=args.steps)


def predict(args) -> dict:
    started = time.perf_counter()
    import torch
    import torchvision

    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    model = torchvision.models.get_model(checkpoint["model"]["arch"], num_classes=checkpoint["model"]["num_classes"])
    model.load_state_dict(checkpoint["state_dict"])
    size = checkpoint["preprocess"]["input_size"]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size)).argmax(1)
    return {"seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tlcli.bench.reference")
    parser.add_argument("mode", choices=["phase1", "full", "step", "predict"])
    parser.add_argument("--data")
    parser.add_argument("--checkpoint")
    parser.add_argument("--weights", help="a backbone state dict (phase1)")
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--resize", type=int, default=256)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()
    print(json.dumps({"phase1": phase1, "full": full, "step": step, "predict": predict}[args.mode](args)))


if __name__ == "__main__":
    main()
