"""What a run reports as it goes; kept free of torch so the CLI can import it cheaply."""

from __future__ import annotations


class Observer:
    """What the loop reports as it goes; the CLI draws progress bars or log lines from it."""

    def epoch_start(self, phase: int, epoch: int, epochs: int, batches: int) -> None: ...

    def batch_end(self, done: int, loss: float, accuracy: float, images_per_s: float) -> None: ...

    def epoch_end(self, row: dict) -> None: ...

    def warning(self, text: str) -> None: ...

    def info(self, text: str) -> None:
        """What the run is doing, worth a line in the log (how phase 1 fits its head, ...)."""

    def prepare(self, what: str, done: int, total: int, unit: str = "img") -> None:
        """Work before the first epoch (decoding images, caching features) or in place of epochs
        (the learning-rate range test): ``done`` of ``total`` ``unit``; 0 when it starts."""

    def close(self) -> None:
        """The run is over, finished or not (an error, Ctrl-C): release any live display."""
