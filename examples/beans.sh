#!/usr/bin/env bash
# Reproduces a notebook study ("report") of bean-leaf diseases: how much of a pretrained network to
# freeze. ResNet18 with 0 to 4 residual stages frozen; batch 16, lr 1e-4, up to 30
# epochs, best checkpoint on val_loss, early stopping patience 10, TensorBoard logs, mixed
# precision, deterministic mode. Compared by trainable parameters vs training time vs test
# accuracy, with the six plots (accuracy, loss, over-fitting gap, convergence, parameters vs
# time, test accuracy per configuration).
# Data: the beans data set (angular_leaf_spot, bean_rust, healthy; train/validation/test) straight
# from the Hugging Face Hub, as the report loaded it: downloaded once into the Hugging Face cache
# ($HF_HOME), then read from there (also with HF_DATASETS_OFFLINE=1). Needs
# pip install 'tlcli[hf,tensorboard]'.
# SMOKE=1 sweeps two settings on a small folder exported from the built-in digits at 32x32, one epoch each (offline, seconds).
set -euo pipefail
TLCLI=${TLCLI:-tlcli}
OUT=${OUT:-checkpoints/beans-study}
if [ "${SMOKE:-0}" = 1 ]; then
  [ -d "$OUT-digits" ] || $TLCLI data export digits "$OUT-digits" --limit 12 > /dev/null  # 12 images per class and split
  BASE="--data $OUT-digits --arch resnet18 --weights none --input-size 32 --epochs 1 --deterministic"
  SWEEP="freeze=blocks:0,blocks:4"
else
  BASE="--data hf:AI-Lab-Makerere/beans --arch resnet18 --weights imagenet --batch-size 16 --lr 1e-4 --epochs 30 --monitor val_loss --patience 10 --amp auto --deterministic --tensorboard"
  SWEEP="freeze=blocks:0,blocks:1,blocks:2,blocks:3,blocks:4"
fi
$TLCLI compare --base "$BASE" --sweep "$SWEEP" --out "$OUT"
$TLCLI report "$OUT"
