"""The frozen-feature cache: phase 1 trains the head on backbone features computed once.

With everything before the head frozen and in inference mode, the backbone is a fixed function
of the image, so recomputing it every epoch is wasted work: the features are computed once per
image (once per augmented view when augmenting) and each epoch trains only the head on them,
hundreds of times faster. The head is the model's own module, so the checkpoint still holds the
whole network, and the optimiser state is the same as without the cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from tlcli.core.cache import cache_key
from tlcli.run.checkpoint import atomic_save
from tlcli.data.loading import decoded_batches
from tlcli.engine.device import Precision
from tlcli.engine.distributed import active, gather_objects, reduce_sums
from tlcli.engine.loop import batch_to_device
from tlcli.core.errors import TlcliError
from tlcli.models.freeze import set_train_mode
from tlcli.models.heads import preceding_dropout, within_head
from tlcli.models.weights import safe_torch_load

# Modules that behave differently in training; none may train before the head for the cache to be exact.
_STOCHASTIC_NAMES = ("Dropout", "DropPath", "DropBlock", "StochasticDepth")


class NotCacheable(TlcliError):
    """The network's frozen part is not a fixed function, so its features cannot be cached."""


class FeatureHead(nn.Module):
    """What trains in phase 1: the dropout in front of the head, then the head itself."""

    def __init__(self, head: nn.Module, dropout: float):
        super().__init__()
        self.head = head
        self.dropout = dropout

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(F.dropout(features, self.dropout, self.training))


def _within(name: str, prefix: str) -> bool:
    return not prefix or name == prefix or name.startswith(prefix + ".")


def feature_head(model: nn.Module, head_name: str, *, bn_train: bool) -> FeatureHead:
    """The trainable head of a network whose frozen part is a fixed function; else NotCacheable."""
    if bn_train:
        raise NotCacheable("--bn-train updates BatchNorm statistics in the frozen part")
    if "," in head_name:
        raise NotCacheable(f"the network has two heads ({head_name.replace(',', ', ')}) fed by different features")
    trainable = [name for name, p in model.named_parameters() if p.requires_grad and not _within(name, head_name)]
    if trainable:
        raise NotCacheable(f"parameters before the head train ({trainable[0]}, ...)")
    dropout_module = preceding_dropout(model, head_name)
    set_train_mode(model, bn_train=False)
    for name, module in model.named_modules():
        if not module.training or _within(name, head_name) or _within(head_name, name) or module is dropout_module:
            continue
        if isinstance(module, nn.modules.batchnorm._BatchNorm) or any(part in type(module).__name__ for part in _STOCHASTIC_NAMES):
            raise NotCacheable(f"{name} ({type(module).__name__}) runs in training mode before the head")
    # timm applies its drop_rate as a function in forward_head, right before the classifier.
    p = dropout_module.p if dropout_module is not None else float(getattr(model, "drop_rate", 0.0) or 0.0)
    return FeatureHead(model.get_submodule(head_name), p)


def backbone_digest(model: nn.Module, head_name: str) -> str:
    hasher = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if not within_head(name, head_name):
            hasher.update(name.encode())
            hasher.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


@dataclass
class Features:
    values: torch.Tensor  # float32 (N, views, D)
    valid: torch.Tensor  # bool (N,): False for images that could not be decoded
    reasons: dict[int, str] = field(default_factory=dict)  # index -> "name: reason"


def inference_copy(network: nn.Module) -> nn.Module:
    """For extraction: a copy in eval mode with each BatchNorm folded into the convolution
    before it (~20 % faster on the CPU); the network itself, in eval mode, when it cannot be
    traced (data-dependent control flow)."""
    from torch.fx.experimental.optimization import fuse

    network.eval()
    try:
        return fuse(network)
    except Exception:  # torch.fx raises many types (TraceError, TypeError, ...) for untraceable code
        return network


@torch.no_grad()
def extract(
    network: nn.Module, head_path: str, loader: DataLoader, *, head: nn.Module, views: int, seed: int,
    device: torch.device, precision: Precision, channels_last: bool, decode_threads: int = 1, progress=lambda done, total: None,
) -> Features:
    """Run ``network`` (in eval mode) over ``loader`` ``views`` times, each with its own
    augmentation seed, and keep what enters its submodule ``head_path``. The first batch checks
    that ``head``, the module that will train, reproduces the network's logits from them
    (NotCacheable when something follows the head or the head is not called as a module).
    ``decode_threads``: see ``decoded_batches``; 1 for a dataset that augments."""
    hooked = network.get_submodule(head_path)
    captured: list[torch.Tensor] = []
    hook = hooked.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    count = len(loader.dataset)
    values: torch.Tensor | None = None
    valid = torch.zeros(count, dtype=torch.bool)
    skipped: dict[str, str] = {}
    checked = False
    progress(0, views * count)
    try:
        for view in range(views):
            torch.manual_seed(seed * 7919 + view)
            loader.generator.manual_seed(seed * 7919 + view)
            for step, batch in enumerate(decoded_batches(loader, threads=decode_threads), start=1):
                skipped.update((text.split(": ")[0], text) for text in batch.skipped)
                if len(batch.labels):
                    with precision.autocast():
                        logits = network(batch_to_device(batch, device, channels_last)[0])
                    if len(captured) != 1:
                        raise NotCacheable(f"the head ran {len(captured)} times in one forward pass")
                    features = captured.pop()
                    if not checked:
                        with precision.autocast():
                            alone = head(features)
                        captured.clear()  # when ``head`` is the hooked module itself
                        if alone.shape != logits.shape or not torch.allclose(alone.float(), logits.float(), rtol=1e-3, atol=1e-3):
                            raise NotCacheable("the head's output is not the network's output (layers follow the head)")
                        checked = True
                    if values is None:
                        values = torch.zeros(count, views, *features.shape[1:])
                    values[batch.indices, view] = features.float().cpu()
                    valid[batch.indices] = True
                progress(view * count + min(step * loader.batch_size, count), views * count)
    finally:
        hook.remove()
    values, valid, skipped = _whole(values, valid, skipped)
    if values is None:
        raise TlcliError(f"none of the {count} images could be read; run 'tlcli data check'")
    images = loader.dataset
    reasons = {}
    for index in (~valid).nonzero().flatten().tolist():
        name = images.images.name(index) if hasattr(images, "images") else str(index)
        reasons[index] = skipped.get(name, f"{name}: could not be decoded")
    return Features(values, valid, reasons)


def _whole(values: torch.Tensor | None, valid: torch.Tensor, skipped: dict[str, str]):
    """Under torchrun each process extracted its shard of the images, zeros elsewhere: summed
    over the processes, every process has the features of all of them."""
    if not active():
        return values, valid, skipped
    shape = next((shape for shape in gather_objects(None if values is None else values.shape) if shape is not None), None)
    if shape is None:
        return None, valid, skipped
    merged: dict[str, str] = {}
    for part in gather_objects(skipped):
        merged.update(part)
    return reduce_sums(torch.zeros(shape) if values is None else values), reduce_sums(valid.to(torch.uint8)).bool(), merged


def features_key(*parts) -> str:
    return cache_key("features", *parts)


def load_cached(path: Path) -> Features | None:
    """The features stored at ``path``; None when there are none, or the file is damaged (then
    they are computed again and the file replaced)."""
    if not path.exists():
        return None
    try:
        stored = safe_torch_load(path, TlcliError, "feature cache")
        return Features(stored["values"], stored["valid"], {int(k): v for k, v in stored["reasons"].items()})
    except (TlcliError, KeyError, TypeError, AttributeError):
        return None


def save_cached(features: Features, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({"values": features.values, "valid": features.valid, "reasons": {str(k): v for k, v in features.reasons.items()}}, path)


class FeatureSet(Dataset):
    """Cached features in ``TransformedImages``' sample format; with several views, each draw
    picks one at random (seeded per epoch like the rest of the run)."""

    def __init__(self, features: Features, labels: list[int]):
        self.features = features
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, labels) of every view of every readable image, for a full-batch fit."""
        valid = self.features.valid
        values = self.features.values[valid]  # (n, views, ...)
        labels = torch.tensor(self.labels, dtype=torch.long)[valid]
        views = values.shape[1]
        return values.reshape(len(values) * views, *values.shape[2:]), labels.repeat_interleave(views)

    def __getitem__(self, index: int):
        label = self.labels[index]
        if not self.features.valid[index]:
            return None, label, index, self.features.reasons.get(index, str(index))
        views = self.features.values.shape[1]
        view = int(torch.randint(views, ())) if views > 1 else 0
        return self.features.values[index, view], label, index, None
