"""Benchmarks of tlcli against plain PyTorch loops (``tlcli bench``, ``make bench``)."""
