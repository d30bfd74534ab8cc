#!/usr/bin/env bash
# QAT table for the CIFAR-10 ResNets (issue 6 item 6): `catq qat` fine-tunes the FP model on train_jpeg10k.bin
# (10,000 JPEG-recompressed training images: a lossy copy of CIFAR-10 training data, so the model sees slightly
# different statistics than at test time) in the academic setting, then `catq eval` measures the 9,000-image
# evaluation split of test.bin. Nothing here looks at the evaluation split before the final measurement.
# Usage: MODELS="resnet20" RUNS="w4a4:10 w2a2:30" SEEDS="0" OUT=bench/results/cnn_qat bench/cnn_qat.sh [extra qat options]
# RUNS items are bits:epochs; each writes OUT/MODEL_BITS_sSEED.catq and a .json eval record; a finished run is
# skipped when its record exists. The table goes to stdout (bench/cnn_qat_table.sh OUT prints it again).
set -euo pipefail
cd "$(dirname "$0")/.."
CATQ=${CATQ:-build/catq}
S=${SHARED:-../shared}/assets
OUT=${OUT:-bench/results/cnn_qat}
MODELS=${MODELS:-resnet20}
RUNS=${RUNS:-"w4a4:10 w2a2:30"}
SEEDS=${SEEDS:-0}
TAG=${TAG:-}
mkdir -p "$OUT"
for m in $MODELS; do
  for run in $RUNS; do
    bits=${run%%:*}; epochs=${run##*:}
    for seed in $SEEDS; do
      base="$OUT/${m}_${bits}${TAG}_s$seed"
      [ -s "$base.json" ] && continue
      t0=$(date +%s)
      "$CATQ" -q qat "$S/resnet-cifar10/$m.onnx" --data "$S/cifar10/train_jpeg10k.bin" --bits "$bits" --epochs "$epochs" \
        --seed "$seed" "$@" -o "$base.catq" > "$base.log"
      t1=$(date +%s)
      "$CATQ" -q --json eval "$base.catq" --data "$S/cifar10/test.bin" --split eval > "$base.eval"
      python3 - "$base" "$m" "$bits" "$epochs" "$seed" $((t1 - t0)) "$TAG" "$*" <<'PY'
import json, sys
base, model, bits, epochs, seed, secs, tag, extra = sys.argv[1:9]
e = json.load(open(base + ".eval"))
rec = {"model": model, "bits": bits, "epochs": int(epochs), "seed": int(seed), "seconds": int(secs), "tag": tag,
       "options": extra, "top1": e["quantized"]["top1"], "top5": e["quantized"]["top5"],
       "weight_bytes": e["quantized"]["weight_bytes"], "history": e["metadata"]["qat"]["history"]}
json.dump(rec, open(base + ".json", "w"), indent=1)
PY
    done
  done
done
bench/cnn_qat_table.sh "$OUT"
