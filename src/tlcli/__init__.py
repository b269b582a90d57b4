"""tlcli: transfer learning for image classification, as short reproducible commands."""

__version__ = "0.1.0"
