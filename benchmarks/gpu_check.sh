#!/usr/bin/env bash
# GPU check of tlcli's training (issue 18): images/s of full training of EfficientNet-B0 and
# ResNet18 on one GPU and, with several, on all of them through --nproc (DistributedDataParallel
# on NCCL), in fp32, bf16 + channels-last, and bf16 + channels-last + torch.compile; each with
# the fraction of the GPUs' dense bf16 peak it reaches (model FLOPs of forward + backward, as
# counted by torch's FlopCounterMode, times images/s). Then a sync check: one epoch under
# torch.cuda.set_sync_debug_mode("warn") counts the waits for the GPU, which must not grow with
# the number of steps (the loop reads its sums only at the progress interval and the epoch's end).
#
#   benchmarks/gpu_check.sh            # python from $PYTHON, else python
#   BF16_PEAK_TFLOPS=989 EPOCHS=4 BATCH=128 benchmarks/gpu_check.sh
#
# Without CUDA it prints "no CUDA: skipped" and exits 0. Data: the built-in digits enlarged to
# 224x224 (offline, 1,259 training images), random weights (nothing to download); images/s is
# the best epoch after the first, which holds the warm-up and compilation.
set -euo pipefail

PYTHON=${PYTHON:-python}
EPOCHS=${EPOCHS:-4}
BATCH=${BATCH:-128}
export PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)/src${PYTHONPATH:+:$PYTHONPATH}"

gpus=$("$PYTHON" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
if [ "$gpus" = 0 ]; then
    echo "no CUDA: skipped"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TLCLI_CHECKPOINTS_DIR="$work/checkpoints" TLCLI_CACHE_DIR="$work/cache"

peak=$("$PYTHON" - <<'EOF'
import os, torch
# Dense bf16 tensor-core peaks (TFLOP/s), from the vendors' data sheets.
PEAKS = {"H200": 989, "H100 PCIe": 756, "H100": 989, "GH200": 989, "A100": 312, "L40S": 362, "L4": 121, "A10": 125, "4090": 165}
name = torch.cuda.get_device_name(0)
given = os.environ.get("BF16_PEAK_TFLOPS")
print(float(given) if given else next((value for key, value in PEAKS.items() if key in name), 0))
EOF
)
echo "$("$PYTHON" -c "import torch; print(torch.cuda.get_device_name(0))") x $gpus, bf16 peak ${peak} TFLOP/s per GPU (0: unknown, set BF16_PEAK_TFLOPS)"
printf "%-16s %-18s %5s %10s %10s %8s\n" arch setting gpus images/s TFLOP/s "of peak"

flops_per_image() {  # forward + backward FLOPs of one 224x224 image
    "$PYTHON" - "$1" <<'EOF'
import sys, torch
from torch.utils.flop_counter import FlopCounterMode
from tlcli.core.config import ModelConfig
from tlcli.models.registry import build_model
model = build_model(ModelConfig(arch=sys.argv[1], weights="none", freeze="none", input_size=224), num_classes=10).model.cuda()
images = torch.randn(8, 3, 224, 224, device="cuda")
with FlopCounterMode(display=False) as counter:
    model(images).sum().backward()
print(counter.get_total_flops() / len(images))
EOF
}

counts=(1)
[ "$gpus" -gt 1 ] && counts+=("$gpus")
for arch in efficientnet_b0 resnet18; do
    flops=$(flops_per_image "$arch")
    for setting in "fp32:--amp off --no-channels-last" "bf16+cl:--amp bf16 --channels-last" "bf16+cl+compile:--amp bf16 --channels-last --compile"; do
        name=${setting%%:*}
        read -r -a flags <<< "${setting#*:}"
        for n in "${counts[@]}"; do
            out="$work/$arch-$name-$n"
            if ! "$PYTHON" -m tlcli train --nproc "$n" --data digits --arch "$arch" --weights none --freeze none --input-size 224 \
                    --epochs "$EPOCHS" --batch-size "$BATCH" --cache-images memory --cache-features off --out "$out" --json \
                    "${flags[@]}" > "$out.json" 2> "$out.log"; then
                printf "%-16s %-18s %5s failed: %s\n" "$arch" "$name" "$n" "$(tail -n 1 "$out.log")"
                continue
            fi
            "$PYTHON" - "$out/history.csv" "$flops" "$peak" "$n" "$arch" "$name" <<'EOF'
import csv, sys
history, flops, peak, n = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
rows = list(csv.DictReader(open(history)))
speed = max(float(row["images_per_s"]) for row in rows[1:] or rows)  # all processes' images
achieved = speed * flops / 1e12
share = f"{achieved / (peak * n):.1%}" if peak else "?"
print(f"{sys.argv[5]:<16} {sys.argv[6]:<18} {n:>5} {speed:>10.0f} {achieved:>10.1f} {share:>8}")
EOF
        done
    done
done

echo "sync check (one GPU, resnet18, bf16 + channels-last):"
"$PYTHON" - <<'EOF'
import warnings
import torch
from tlcli.core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from tlcli.engine import loop
from tlcli.run.build import prepare

config = TrainConfig(data=DataConfig("digits"), model=ModelConfig(arch="resnet18", weights="none", freeze="none", input_size=224),
                     run=RunConfig(epochs=1, batch_size=64, amp="bf16", channels_last=True, cache_images="memory", cache_features="off"))
t = prepare(config).trainer
loop.PROGRESS_EVERY_S = float("inf")  # only the end-of-epoch read
for steps in (5, 15):
    batches = [batch for _, batch in zip(range(steps), t.train_loader)]
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        loop.train_one_epoch(t.with_batches(batches))
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    print(f"  {steps} steps: {len(syncs)} waits for the GPU")
EOF
