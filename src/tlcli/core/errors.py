"""The errors tlcli raises on purpose.

Library code raises these with one sentence that tells the user what went wrong and, where
possible, what to do; the CLI turns them into ``Error: <message>`` and exit code 1.
"""


class TlcliError(Exception):
    """A failure the user can act on; the message is shown as is, without a traceback."""


class DataError(TlcliError):
    """The data set is missing, malformed or cannot be trained on."""


class ModelError(TlcliError):
    """An unknown architecture, a bad head size or a bad freeze policy."""


class WeightsError(TlcliError):
    """Pretrained weights could not be found, fetched or loaded."""


class CheckpointError(TlcliError):
    """A checkpoint is missing, truncated, of an unknown version or unsafe to load."""


class ConfigError(TlcliError):
    """A configuration value outside its allowed choices or range (a usage error: exit 2)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, a termination signal or a stop asked for after an epoch, during a run, with what
    the run left: the epoch its last.pt holds and how to resume it. A KeyboardInterrupt still, so
    that no ``except TlcliError`` (a study moving on to its next run) swallows it; the CLI shows the
    message and exits 128 + ``signum`` (130 for Ctrl-C)."""

    def __init__(self, message: str, *, signum: int = 2):
        super().__init__(message)
        self.signum = signum
