"""``predict``: classify images with a checkpoint or an exported ONNX model, streaming the results.

``inputs`` lists what is classified and in which order, ``decoding`` decodes it on worker
processes, ``classifiers`` holds the PyTorch and onnxruntime backends, ``results`` the output
formats, ``output_file`` the ``--output`` file and ``resume_scan`` how ``--resume`` reads it back,
and ``job`` ties them together.
"""

from tlcli.prediction.classifiers import load_classifier
from tlcli.prediction.decoding import decoding_workers
from tlcli.prediction.job import PredictSummary, predict, predict_images
from tlcli.prediction.results import Prediction

__all__ = ["Prediction", "PredictSummary", "decoding_workers", "load_classifier", "predict", "predict_images"]
