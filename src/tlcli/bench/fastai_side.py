"""The fastai side of the recipe comparison: fastai's documented transfer-learning recipe
(``vision_learner`` + ``fine_tune``) on exactly the split and ImageNet weights of a tlcli run.

``python -m tlcli.bench.fastai_side RUN_DIR --epochs N [--batch-size 32] [--size S]`` prints one
JSON object to stdout; fastai's epoch table and everything else goes to stderr. The split comes
from tlcli's own loaders (never re-split here), so both sides see the same images; the weights
come from timm through the Hugging Face cache (the caller sets ``HF_HOME`` and
``HF_HUB_OFFLINE=1``), and are checked against the run's frozen backbone tensors before training.
fastai is imported inside the functions so that importing this module never needs it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

SEED = 42


def load_run(run_dir: Path) -> tuple[dict, object]:
    """The run's checkpoint and its data, through tlcli's loaders, so the split is tlcli's own."""
    from tlcli.run.checkpoint import load_checkpoint
    from tlcli.core.config import TrainConfig
    from tlcli.data.sources import load_data

    checkpoint = load_checkpoint(run_dir / "best.pt")
    data = load_data(TrainConfig.from_dict(checkpoint["config"]).data)
    if not len(data.splits["val"]):
        raise SystemExit(f"{run_dir}'s data has no val split: fastai's recipe validates on it")
    return checkpoint, data


def timm_name(checkpoint: dict) -> str:
    """The timm architecture of the run: fastai must build the same network with the same weights."""
    arch = checkpoint["model"]["arch"]
    if not arch.startswith("timm:"):
        raise SystemExit(f"the run's arch is {arch}; only timm:<name> runs share their weights with fastai")
    return arch.removeprefix("timm:")


class Item:
    """One image of a split: an object, not a tuple, which fastai's transforms would map over."""

    __slots__ = ("images", "index")

    def __init__(self, images, index: int) -> None:
        self.images, self.index = images, index

    def label(self, classes) -> str:
        return classes[self.images.labels[self.index]]


def items_of(images) -> list[Item]:
    return [Item(images, i) for i in range(len(images))]


def image_source(item: Item):
    """What fastai opens: the file itself where there is one (fastai's own decoding, as its
    recipe does), else tlcli's decoded image; PILImage.create keeps a PIL image's mode as
    it is, so grey ones are made RGB here (the ImageNet network takes three channels)."""
    paths = getattr(item.images, "paths", None)
    if paths is not None:
        return paths[item.index]
    return item.images.load(item.index).convert("RGB")


def build_dls(data, *, size: int, batch_size: int):
    """fastai DataLoaders on tlcli's train and val images (val is fastai's validation set), with
    the documented transforms: ``Resize(size)`` per item and ``aug_transforms()`` per batch.
    Items are ``Item``s, so ``test_dl`` can take the test split the same way."""
    from fastai.vision.all import CategoryBlock, DataBlock, ImageBlock, IndexSplitter, Resize, aug_transforms

    train, val = data.splits["train"], data.splits["val"]
    items = items_of(train) + items_of(val)
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock(vocab=list(data.classes))),  # tlcli's class order
        get_x=image_source,
        get_y=lambda item: item.label(data.classes),
        splitter=IndexSplitter(list(range(len(train), len(items)))),
        item_tfms=Resize(size),
        batch_tfms=aug_transforms(),
    )
    return block.dataloaders(items, bs=batch_size)


def check_weights(learn, checkpoint: dict) -> int:
    """How many of the run's frozen backbone tensors fastai's pretrained body holds unchanged.

    Those tensors kept their ImageNet values through tlcli's run, so equality shows both sides
    start from the same weights (and that timm did load pretrained ones, from the cache)."""
    import torch

    body = learn.model[0].model.state_dict()
    frozen = checkpoint["freeze"].get("frozen", [])
    differ = [name for name in frozen if name not in body or not torch.equal(body[name].cpu(), checkpoint["state_dict"][name].cpu())]
    if differ:
        raise SystemExit(f"fastai's pretrained body differs from the run's frozen weights in {len(differ)} tensors, e.g. {differ[0]}")
    if not frozen:
        print("the run froze nothing: its weights cannot be compared with fastai's", file=sys.stderr)
    return len(frozen)


def run_recipe(run_dir: Path, *, epochs: int, batch_size: int, size: int | None) -> dict:
    """fastai's recipe end to end; ``seconds`` times DataLoaders, learner, fine_tune and the test
    evaluation (not the tlcli loading, nor the weight check, which are not part of the recipe)."""
    from fastai.vision.all import accuracy, set_seed, vision_learner

    checkpoint, data = load_run(run_dir)
    size = size or checkpoint["preprocess"]["input_size"]
    set_seed(SEED, reproducible=True)  # before the DataLoaders: their shuffling draws from it
    start = time.perf_counter()
    dls = build_dls(data, size=size, batch_size=batch_size)
    learn = vision_learner(dls, timm_name(checkpoint), pretrained=True, metrics=accuracy)
    learn.logger = lambda line: print(line, file=sys.stderr)  # the epoch table, away from stdout
    paused = time.perf_counter()
    checked = check_weights(learn, checkpoint)
    start += time.perf_counter() - paused
    with learn.no_bar():
        learn.fine_tune(epochs)
        val_loss, val_acc = learn.validate()
        test = data.splits["test"]
        test_acc = None
        if len(test):
            test_dl = learn.dls.test_dl(items_of(test), with_labels=True)
            test_loss, test_acc = learn.validate(dl=test_dl)
    seconds = time.perf_counter() - start
    return {
        "val_acc": float(val_acc),
        "test_acc": None if test_acc is None else float(test_acc),
        "seconds": round(seconds, 3),
        "epochs": epochs,
        "train_images": len(data.splits["train"]),
        "val_images": len(data.splits["val"]),
        "test_images": len(test),
        "size": size,
        "recipe": (
            f"fastai vision_learner({timm_name(checkpoint)}, pretrained) + fine_tune({epochs}): 1 frozen epoch "
            f"(one cycle to lr 2e-3), then {epochs} unfrozen (one cycle, lr 1e-5..1e-3); Resize({size}) + "
            f"aug_transforms(); bs {batch_size}; seed {SEED}; {dls.train.fake_l.num_workers} workers; last epoch's weights"
        ),
        "weights_checked": checked,
    }


def main(argv: list[str] | None = None) -> None:
    """The command line; stdout carries only the JSON (anything printed meanwhile goes to stderr)."""
    parser = argparse.ArgumentParser(prog="python -m tlcli.bench.fastai_side", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a tlcli phase-1 run folder (holds best.pt)")
    parser.add_argument("--epochs", type=int, required=True, help="fine_tune's unfrozen epochs (one frozen epoch comes first)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=None, help="Resize size (default: the run's input size)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or (args.size is not None and args.size < 1):
        parser.error("--epochs, --batch-size and --size must be positive")
    with contextlib.redirect_stdout(sys.stderr):
        result = run_recipe(args.run_dir, epochs=args.epochs, batch_size=args.batch_size, size=args.size)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
