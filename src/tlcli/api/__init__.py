"""tlcli from Python: the command line's verbs as functions, with the options as keyword arguments
named as on the command line. The CLI is a thin layer over exactly these."""

from tlcli.api.options import train_config
from tlcli.api.train import compare, finetune, train
from tlcli.api.use import Predictions, evaluate, export, predict, summary

__all__ = ["compare", "evaluate", "export", "finetune", "predict", "summary", "train", "train_config", "Predictions"]
