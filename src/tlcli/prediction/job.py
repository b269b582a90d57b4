"""``predict``: classify a stream of images batch by batch, writing each batch's results as soon
as the model has seen it, and continue a file a killed job left (``resume``)."""

from __future__ import annotations

import contextlib
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import BinaryIO, TextIO

import torch

from tlcli.core.errors import ConfigError, Interrupted, TlcliError
from tlcli.prediction.classifiers import load_classifier
from tlcli.prediction.decoding import DecodedBatch, decoded_batches, decoding_workers
from tlcli.prediction.inputs import Item, iter_items
from tlcli.prediction.output_file import ResultsFile, check_output, open_results
from tlcli.prediction.results import FORMATS, Prediction, batch_text, footer, header, top_classes
from tlcli.core.stopping import deferred, stop_asked, stopped_by


@dataclass
class PredictSummary:
    source: Path  # the checkpoint or ONNX file used
    images: int = 0  # classified or failed by this run
    failed: int = 0
    skipped: int = 0  # already in the output file (--resume)
    failed_before: int = 0  # error rows among them
    cut: int = 0  # bytes cut from the output file's end before appending (see output_file)


def _first_classifiable(items: Iterator[Item]) -> Iterator[Item]:
    """The same stream, after checking (before any model loads) that it holds an image to try."""
    skipped: list[Item] = []
    for item in items:
        if item.error is None:
            return chain(skipped, [item], items)
        skipped.append(item)
    raise TlcliError("no images to predict: " + ("; ".join(f"{i.name}: {i.error}" for i in skipped) or "none given"))


def _not_done(items: Iterator[Item], done: Counter, summary: PredictSummary) -> Iterator[Item]:
    for item in items:
        if done[item.name] > 0:
            done[item.name] -= 1
            summary.skipped += 1
        else:
            yield item


def _predictions(batch: DecodedBatch, probabilities: torch.Tensor | None, classes: list[str], k: int) -> list[Prediction]:
    rows = iter(top_classes(probabilities, classes, k) if probabilities is not None else ())
    results = []
    for name, error in zip(batch.names, batch.errors):
        if error is None:
            results.append(Prediction(name, next(rows)))
        else:
            results.append(Prediction(name, [], error))
    return results


class _Writer:
    """Text to a results file or a stream, a batch at a time. A termination signal waits for a
    batch's write to a file (a kill leaves whole rows), not to a stream, whose reader may stall."""

    def __init__(self, format: str, file: ResultsFile | None, stream: TextIO | None):
        self.format, self.file, self.stream, self.first = format, file, stream, True

    def write(self, text: str) -> None:
        if self.file is not None:
            self.file.write(text)
        elif self.stream is not None and text:
            try:
                buffer = getattr(self.stream, "buffer", None)  # bytes: a file name need not be UTF-8
                buffer.write(text.encode("utf-8", errors="surrogateescape")) if buffer else self.stream.write(text)
                self.stream.flush()
            except BrokenPipeError:  # `| head`: the reader has what it wanted
                raise Interrupted("the reader of the output closed it", signum=signal.SIGPIPE) from None
            except OSError as exc:  # stdout on a full disk
                raise TlcliError(f"cannot write the output: {exc.strerror or exc}") from None

    def batch(self, predictions: list[Prediction], summary: PredictSummary) -> None:
        with deferred() if self.file is not None else contextlib.nullcontext():
            self.write(batch_text(self.format, predictions, first=self.first))
            self.first = False
            summary.images += len(predictions)
            summary.failed += sum(1 for p in predictions if p.error)

    def end(self) -> None:
        """The JSON array's closing bracket, also after a stop: what was written stays valid JSON."""
        try:
            self.write(footer(self.format))
        except (TlcliError, KeyboardInterrupt):
            pass


def _classify(classifier, items: Iterator[Item], k: int, writer: _Writer, summary: PredictSummary, *, batch_size: int,
              workers: int | None, on_batch: Callable[[list[Prediction]], None], output: Path | None) -> None:
    batches = decoded_batches(items, transform=classifier.transform, draft_size=classifier.draft_size, batch_size=batch_size,
                              workers=decoding_workers() if workers is None else workers)
    try:
        for batch in batches:
            predictions = _predictions(batch, classifier(batch.images) if batch.images is not None else None, classifier.classes, k)
            writer.batch(predictions, summary)
            on_batch(predictions)
            if stop_asked():
                raise Interrupted(_stopped_message(summary, output, signal.SIGUSR1), signum=signal.SIGUSR1)
    finally:
        batches.close()  # the decoding workers stop now, whatever ended the loop


def predict(
    inputs: list[str],
    *,
    checkpoint: str | None = None,
    model_file: Path | None = None,
    topk: int = 5,
    device: str = "auto",
    batch_size: int = 32,
    workers: int | None = None,
    from_list: str | None = None,
    format: str = "csv",
    output: Path | None = None,
    stream: TextIO | None = None,
    resume: bool = False,
    stdin: BinaryIO | None = None,
    on_batch: Callable[[list[Prediction]], None] = lambda predictions: None,
    tta: bool = False,
) -> PredictSummary:
    """Classify ``inputs`` (files, folders, globs, ``-``) and ``from_list``'s lines, in that order.

    Each batch's predictions go to ``on_batch`` and, in ``format``, to ``output`` (appended to
    when ``resume``, skipping what it holds) or to ``stream``; a signal stops the job between
    batches, with what was written said in the ``Interrupted`` raised."""
    if format not in FORMATS:
        raise TlcliError(f"unknown format '{format}'; choose one of {', '.join(FORMATS)}")
    _check_sizes(topk, batch_size)
    output = output if format != "table" else None
    if output is not None:
        check_output(output, format, resume=resume)
    items = _first_classifiable(iter_items(inputs, from_list=from_list, stdin=stdin))
    classifier = load_classifier(checkpoint, model_file=model_file, device=device, tta=tta)
    k = min(topk, len(classifier.classes))
    file = open_results(output, format, resume=resume, topk=k, batch_size=batch_size) if output is not None else None
    summary = PredictSummary(classifier.source, failed_before=file.failed if file else 0, cut=file.cut if file else 0)
    writer = _Writer(format, file, stream if format != "table" else None)
    try:
        if file is None:
            writer.write(header(format))
        _classify(classifier, _not_done(items, file.done if file else Counter(), summary), k, writer, summary,
                  batch_size=batch_size, workers=workers, on_batch=on_batch, output=output)
    except KeyboardInterrupt as interrupt:
        if isinstance(interrupt, Interrupted) and interrupt.signum != signal.SIGPIPE:
            raise
        signum = getattr(interrupt, "signum", signal.SIGINT)
        raise Interrupted(_stopped_message(summary, output, signum), signum=signum) from None
    finally:
        writer.end()
        if file is not None:
            file.close()
    return summary


def _check_sizes(topk: int, batch_size: int) -> None:
    if topk < 1 or batch_size < 1:
        raise ConfigError(f"top-k and the batch size must be at least 1, got {topk} and {batch_size}")


def predict_images(images: list, *, checkpoint: str | None = None, model_file: Path | None = None, topk: int = 5, device: str = "auto",
                   batch_size: int = 32, on_batch: Callable[[list[Prediction]], None] = lambda predictions: None, tta: bool = False,
                   ) -> tuple[list[Prediction], PredictSummary]:
    """Classify PIL images already in memory, named ``<image N>``, with the preprocessing a file gets."""
    _check_sizes(topk, batch_size)
    classifier = load_classifier(checkpoint, model_file=model_file, device=device, tta=tta)
    predictions: list[Prediction] = []
    for start in range(0, len(images), batch_size):
        names = range(start, min(start + batch_size, len(images)))
        probabilities = classifier(torch.stack([classifier.transform(images[i].convert("RGB")) for i in names]))
        batch = [Prediction(f"<image {i}>", top) for i, top in zip(names, top_classes(probabilities, classifier.classes, topk))]
        predictions.extend(batch)
        on_batch(batch)
    return predictions, PredictSummary(classifier.source, images=len(images))


def _stopped_message(summary: PredictSummary, output: Path | None, signum: int) -> str:
    done = f"{summary.images} images predicted" + (f" ({summary.skipped} were already in {output})" if summary.skipped else "")
    if output is None:
        return f"{stopped_by(signum)} after {done}"
    return f"{stopped_by(signum)} after {done}; continue with the same command and --resume: {output} holds whole rows"
