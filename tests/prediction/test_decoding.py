"""``tlcli.prediction.decoding``: batches of decoded images in input order, in the main process
(workers=0) and on a worker process (workers=1) alike; unreadable items carry their error in
their place; and the default number of decoding workers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import write_image
from tlcli.prediction import decoding
from tlcli.prediction.decoding import decoded_batches, decoding_workers
from tlcli.prediction.inputs import Item


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """A transform whose output shows which image it came from: its own pixels, CHW."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


def _pixels(path: Path) -> torch.Tensor:
    return _to_tensor(Image.open(path))


@pytest.fixture
def items(tmp_path) -> list[Item]:
    """Readable files, encoded bytes (as from stdin), an error item, a file that is not an image
    and a file that is gone: seven items, so that batches of three end on a short one."""
    images = [write_image(tmp_path / f"{i}.png", size=(8, 8), seed=i) for i in range(4)]
    (tmp_path / "text.png").write_text("not an image")
    return [
        Item(str(images[0]), images[0]),
        Item("-", images[1].read_bytes()),
        Item("missing", error="no such file or folder"),
        Item(str(images[2]), images[2]),
        Item(str(tmp_path / "text.png"), tmp_path / "text.png"),
        Item(str(tmp_path / "gone.png"), tmp_path / "gone.png"),
        Item(str(images[3]), images[3]),
    ]


def _decode(items: list[Item], workers: int, batch_size: int = 3) -> list:
    return list(decoded_batches(iter(items), transform=_to_tensor, draft_size=None, batch_size=batch_size, workers=workers))


@pytest.mark.parametrize("workers", [0, 1])
def test_batches_keep_the_input_order_with_errors_in_their_place(items, workers):
    batches = _decode(items, workers)

    assert [len(batch.names) for batch in batches] == [3, 3, 1]
    assert [name for batch in batches for name in batch.names] == [item.name for item in items]
    errors = [error for batch in batches for error in batch.errors]
    assert [error is None for error in errors] == [True, True, False, True, False, False, True]
    assert errors[2] == "no such file or folder"  # an item's own error is passed on as it is
    assert errors[4] == "not an image PIL can read"
    assert errors[5].startswith("cannot be read") and "No such file" in errors[5]


@pytest.mark.parametrize("workers", [0, 1])
def test_each_batch_stacks_only_its_readable_images_in_order(items, tmp_path, workers):
    batches = _decode(items, workers)

    # The fixture's four images, the second of them read as bytes.
    expected = [_pixels(tmp_path / f"{i}.png") for i in range(4)]
    stacked = [image for batch in batches if batch.images is not None for image in batch.images]
    assert len(stacked) == len(expected)
    assert all(torch.equal(got, want) for got, want in zip(stacked, expected))
    assert batches[0].images.shape == (2, 3, 8, 8)


def _decoding_process(image: Image.Image) -> torch.Tensor:
    """A transform that tells which process ran it."""
    return torch.tensor([os.getpid()])


def test_workers_decode_off_the_main_process_unless_there_is_one_batch_only(items):
    def processes(items, batch_size):
        batches = decoded_batches(iter(items), transform=_decoding_process, draft_size=None, batch_size=batch_size, workers=1)
        return {int(pid) for batch in batches if batch.images is not None for pid in batch.images}

    assert os.getpid() not in processes(items, batch_size=3)
    # One batch: a worker would only add its start-up, so the main process decodes it.
    assert processes(items, batch_size=len(items)) == {os.getpid()}


def test_a_batch_with_nothing_readable_has_no_images():
    batches = _decode([Item("a", error="x"), Item("b", error="y")], workers=0)

    assert len(batches) == 1 and batches[0].images is None and batches[0].errors == ["x", "y"]


def test_the_same_batches_come_from_the_main_process_and_a_worker(items):
    in_process, on_worker = _decode(items, 0, batch_size=2), _decode(items, 1, batch_size=2)

    assert [b.names for b in in_process] == [b.names for b in on_worker]
    assert [b.errors for b in in_process] == [b.errors for b in on_worker]
    assert all((a.images is None and b.images is None) or torch.equal(a.images, b.images) for a, b in zip(in_process, on_worker))


def test_the_items_are_read_lazily_as_batches_are_taken(tmp_path):
    taken = []

    def stream():
        for i in range(100):
            taken.append(i)
            yield Item(f"item {i}", error="skipped")

    batches = decoded_batches(stream(), transform=_to_tensor, draft_size=None, batch_size=4, workers=0)
    next(batches)

    # The first batch and one item more (to see whether there is a second batch), not all 100.
    assert len(taken) == 5
    batches.close()


@pytest.mark.parametrize(("cores", "workers"), [(1, 1), (2, 1), (4, 3), (9, 8), (64, 8)])
def test_the_default_workers_are_the_cores_but_one_from_one_to_eight(monkeypatch, cores, workers):
    monkeypatch.setattr(decoding, "available_cores", lambda: cores)

    assert decoding_workers() == workers
