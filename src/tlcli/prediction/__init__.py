"""``predict``: classify images with a checkpoint or an exported ONNX model, streaming the results.

``inputs`` lists what is classified and in which order, ``decoding`` decodes it on worker
processes, ``classifiers`` holds the PyTorch and onnxruntime backends, ``results`` the output
formats, ``output_file`` the ``--output``/``--resume`` file, and ``job`` ties them together.
"""

from tlcli.prediction.classifiers import load_classifier
from tlcli.prediction.job import PredictSummary, default_workers, predict
from tlcli.prediction.results import FORMATS, Prediction

__all__ = ["FORMATS", "Prediction", "PredictSummary", "default_workers", "load_classifier", "predict"]
