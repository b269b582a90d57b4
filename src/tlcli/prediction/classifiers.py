"""The two backends of ``predict``: a checkpoint run by PyTorch, or an exported ONNX file run by
onnxruntime. Each takes a batch of transformed images and returns class probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tlcli.run.checkpoint import load_checkpoint, model_from_checkpoint
from tlcli.data.transforms import build_transform
from tlcli.engine.device import resolve_device
from tlcli.engine.tta import averaged_probabilities
from tlcli.core.errors import TlcliError
from tlcli.run.locate import resolve_checkpoint


class _Classifier:
    """Class probabilities of a batch of transformed images; with ``tta``, averaged over the views
    of ``engine.tta``."""

    tta = False

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return averaged_probabilities(self.probabilities, batch) if self.tta else self.probabilities(batch)


class TorchClassifier(_Classifier):
    def __init__(self, checkpoint: str | None, device: str):
        self.source = resolve_checkpoint(checkpoint)
        state = load_checkpoint(self.source)
        built = model_from_checkpoint(state)
        self.classes = state["classes"]
        self.device = resolve_device(device)
        self.model = built.model.to(self.device).eval()
        self.transform = build_transform(built.preprocess)
        self.draft_size = built.preprocess.resize_size

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return super().__call__(batch.to(self.device))  # test-time views are made where the model runs

    @torch.no_grad()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch.to(self.device)).float().softmax(1).cpu()


class OnnxClassifier(_Classifier):
    """An exported model run by onnxruntime, with the preprocessing stored in its metadata."""

    def __init__(self, path: Path):
        from tlcli.data.transforms import Preprocess

        try:
            import onnxruntime
        except ImportError:
            raise TlcliError("ONNX models need the onnx extra: pip install 'tlcli[onnx]'") from None
        if not path.is_file():
            raise TlcliError(f"model file {path} does not exist")
        try:
            options = onnxruntime.SessionOptions()
            # As many threads as PyTorch would use, so that both backends are compared like for like.
            options.intra_op_num_threads = torch.get_num_threads()
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            raise TlcliError(f"{path} is not a readable ONNX model ({str(exc).strip().splitlines()[0][:200]})") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        if "tlcli.classes" not in metadata or "tlcli.preprocess" not in metadata:
            raise TlcliError(f"{path} was not exported by tlcli: it carries no classes or preprocessing")
        self.source = path
        self.classes = json.loads(metadata["tlcli.classes"])
        preprocess = Preprocess.from_dict(json.loads(metadata["tlcli.preprocess"]))
        self.transform = build_transform(preprocess, normalize=metadata.get("tlcli.input") != "uint8")
        self.draft_size = preprocess.resize_size
        self.input = self.session.get_inputs()[0].name

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.input: batch.numpy()})[0]).float().softmax(1)


def load_classifier(checkpoint: str | None, *, model_file: Path | None = None, device: str = "auto", tta: bool = False):
    """A callable batch -> probabilities with ``classes``, ``transform`` and ``source``: PyTorch or
    ONNX; ``tta`` averages each prediction over a few views of the image."""
    if model_file is None and checkpoint is not None and checkpoint.endswith(".onnx"):
        model_file = Path(checkpoint)
    classifier = OnnxClassifier(model_file) if model_file is not None else TorchClassifier(checkpoint, device)
    classifier.tta = tta
    return classifier
