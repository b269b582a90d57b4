"""tlcli's version, recorded in every checkpoint, run and export."""

__version__ = "0.1.0"
