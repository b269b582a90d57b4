#!/usr/bin/env bash
# Reproduces a notebook study ("report") of CIFAR-10: does transfer learning beat training from scratch?
# A CNN from scratch (2,122,186 parameters) against a frozen ImageNet
# backbone, compared by validation accuracy, the train-val gap (over- vs under-fitting),
# per-class precision/recall/F1 and learning curves.
# Data: CIFAR-10's "python version" in data/cifar10/cifar-10-batches-py/ (or add --download).
# SMOKE=1 runs the comparison on a small folder exported from the built-in digits, one epoch each, without pretrained weights.
set -euo pipefail
TLCLI=${TLCLI:-tlcli}
OUT=${OUT:-checkpoints/cifar10-study}
if [ "${SMOKE:-0}" = 1 ]; then
  [ -d "$OUT-digits" ] || $TLCLI data export digits "$OUT-digits" --limit 12 > /dev/null  # 12 images per class and split
  BASE="--data $OUT-digits --epochs 1"; TRANSFER="--arch resnet18 --weights none --freeze backbone --input-size 32"
else
  BASE="--data cifar10 --epochs 20"; TRANSFER="--arch resnet18 --weights imagenet --freeze backbone --input-size 32"
fi
$TLCLI summary --arch simple_cnn --num-classes 10
$TLCLI compare --base "$BASE" --run "cnn: --arch simple_cnn --weights none" --run "transfer: $TRANSFER" --out "$OUT"
for run in cnn transfer; do $TLCLI evaluate "$OUT/runs/$run"; done
$TLCLI report "$OUT"
