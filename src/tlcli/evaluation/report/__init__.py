"""Figures and tables made from runs: learning curves, confusion matrices."""
