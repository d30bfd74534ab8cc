#!/usr/bin/env bash
# RTN table for the CIFAR-10 ResNets in the academic PTQ setting: weights per-output-channel symmetric,
# activations per-tensor asymmetric, first conv and last linear at 8 bits (suffix fl8), BN folded,
# calibrated on the calibration split of test.bin (1,000 images), evaluated on the 9,000-image split.
# The observer applies to activations; the MSE rows also use the MSE search for the weights.
# Usage: bench/rtn_cnn.sh [MODEL...]   (default: resnet20) — writes a markdown table to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
CATQ=${CATQ:-build/catq}
S=${SHARED:-../shared}/assets
models=("$@"); [ ${#models[@]} -eq 0 ] && models=(resnet20)
echo "| model | config | observer (act / weight) | top-1 % | top-5 % | KL(FP‖Q) | top-1 agreement % | weight bytes | seconds |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
for m in "${models[@]}"; do
  onnx=$S/resnet-cifar10/$m.onnx
  fp=$("$CATQ" -q eval "$onnx" --data "$S/cifar10/test.bin" --split eval | sed -n 's/.*FP32 top-1 \([0-9.]*\) %  top-5 \([0-9.]*\) %.*/\1 | \2/p')
  echo "| $m | fp32 | – | $fp | 0 | 100 | (4 bytes/weight) | |"
  for bits in w8a8 w4a4 w2a2; do
    for obs in minmax percentile mse kl; do
      cfg="$bits-$obs-fl8"; wobs=minmax
      if [ "$obs" = mse ]; then cfg="$bits-mse-wmse-fl8"; wobs=mse; fi
      t0=$(date +%s)
      line=$("$CATQ" -q eval "$onnx" --data "$S/cifar10/test.bin" --split eval --quant "$cfg" | grep "KL(FP||Q)")
      t1=$(date +%s)
      echo "$line" | awk -v m="$m" -v c="$bits" -v o="$obs / $wobs" -v s=$((t1-t0)) \
        '{print "| " m " | " c " | " o " | " $3 " | " $6 " | " $9 " | " $12 " | " $15 " | " s " |"}'
    done
  done
done
