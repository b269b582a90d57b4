"""tlcli from Python (a script, or cells of a notebook): the demo's two phases, then evaluation,
prediction of images in memory and an ONNX export, with ``import tlcli`` only.

Run it after ``make demo``, which puts EfficientNet-Lite0's ImageNet weights in .venv/hf:
    HF_HOME=.venv/hf HF_HUB_OFFLINE=1 .venv/bin/python examples/from_python.py
SMOKE=1 runs the same calls with a small CNN from scratch at 16x16, in seconds.
"""

import os

import torch
from sklearn.datasets import load_digits

import tlcli

OUT = os.environ.get("OUT", "checkpoints/from-python")
SMOKE = os.environ.get("SMOKE") == "1"
if SMOKE:
    model = dict(arch="simple_cnn", weights="none", input_size=16, epochs=1)
else:
    model = dict(arch="timm:tf_efficientnet_lite0", input_size=160)

# Phase 1: with ImageNet weights the backbone is frozen and a linear head fitted on its features.
phase1 = tlcli.train("digits", **model, out=f"{OUT}/phase1", overwrite=True)
print(phase1)  # RunResult('checkpoints/from-python/phase1', phase 1, ..., best val_loss ... at epoch ...)

# Phase 2: everything unfrozen at a lower learning rate, with small rotations and zooms (as make demo).
phase2 = tlcli.finetune(phase1.run_dir, epochs=1 if SMOKE else 2, out=f"{OUT}/phase2", overwrite=True)

# Both evaluated on the held-out test split they were trained beside.
for run in (phase1, phase2):
    result = tlcli.evaluate(run.run_dir)
    print(f"phase {run.phase}: test accuracy {result.metrics.accuracy:.3f}, macro F1 {result.metrics.f1_macro:.3f}")

# Images in memory (PIL images or C x H x W tensors) are preprocessed as the run was trained.
digits = load_digits()
tensors = [torch.tensor(image / 16, dtype=torch.float32).unsqueeze(0) for image in digits.images[:4]]
predictions = tlcli.predict(tensors, checkpoint=phase2.run_dir, topk=2)
for prediction, truth in zip(predictions, digits.target[:4]):
    print(f"{prediction.path}: {prediction.label} ({prediction.probability:.2f}), truly {truth}")

# A TorchScript file with the classes and preprocessing inside, checked against PyTorch
# (format="onnx" once the onnx extra is installed: pip install 'tlcli[onnx]').
print(tlcli.export(phase2.run_dir, format="torchscript"))
print(repr(tlcli.summary(phase2.run_dir)))
