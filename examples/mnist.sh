#!/usr/bin/env bash
# Reproduces a notebook study ("report") of MNIST handwritten digits: a small network against a
# frozen pretrained one. An MLP from scratch (784-128-ReLU-Dropout 0.2-64-ReLU-10, Adam 1e-3) against
# ResNet18 with every layer frozen and a new Linear(512,10) head (grayscale to 3 channels,
# resized to 224, Adam 1e-4); 80/20 train/validation split, batch 64, 5-fold cross-validation,
# classification report, confusion matrices, comparison plot, save and reload of the model.
# Data: MNIST's four IDX files in data/mnist/ (or add --download).
# SMOKE=1 runs it on a small folder exported from the built-in digits with 2 folds of one epoch, ResNet18 at 32x32 from scratch.
set -euo pipefail
TLCLI=${TLCLI:-tlcli}
OUT=${OUT:-checkpoints/mnist-study}
if [ "${SMOKE:-0}" = 1 ]; then
  [ -d "$OUT-digits" ] || $TLCLI data export digits "$OUT-digits" --limit 12 > /dev/null  # 12 images per class and split
  BASE="--data $OUT-digits --val-split 0.2 --batch-size 64 --epochs 1"; FOLDS=2; RESNET="--weights none --input-size 32"
else
  BASE="--data mnist --val-split 0.2 --batch-size 64 --epochs 5"; FOLDS=5; RESNET="--weights imagenet --input-size 224"
fi
$TLCLI compare --base "$BASE" --folds "$FOLDS" --out "$OUT" \
  --run "mlp: --arch mlp --weights none --hidden 128,64 --lr 1e-3" \
  --run "resnet18: --arch resnet18 $RESNET --freeze backbone --lr 1e-4"
$TLCLI report "$OUT"
# Save and reload: evaluate and predict read everything (weights, classes, preprocessing) from the checkpoint.
$TLCLI evaluate "$OUT/runs/mlp/fold-1"
