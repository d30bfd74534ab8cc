#!/usr/bin/env bash
# CNN integer runtime benchmark (issue 5): quantized ResNets (.catq) run by the integer graph executor (`catq eval
# --runtime int`: oneDNN int8 convolutions, activations kept as u8 codes between them, ReLU / shortcut add /
# requantization fused where the weights are symmetric int8) against the fake-quant simulation on the 9,000-image evaluation split — top-1 of both
# and the share of identical top-1 decisions — and images/s of FP32 (libtorch + oneDNN fp32 convolutions),
# simulation and integer runtime, all single-threaded. Not part of `make test`.
# Usage (environment variables; defaults in brackets):
#   RUNS ["resnet20:w8a8-wsym:rtn resnet56:w8a8-wsym:rtn resnet20:w8a8:rtn resnet56:w8a8:rtn resnet20:w4a4:rtn
#        resnet56:w4a4:rtn"]  model:bits:method, quantized here (RTN is quick; -wsym = symmetric weights); MODELS_FROM [bench/results/cnn_ptq_i250/models] adds every .catq found there whose
#        name matches EXTRA ["resnet56_w2a2_qdrop_s0 resnet20_w2a4_brecq_s0+cat"]
#   OUT [bench/results/cnn_runtime]   LIMIT [0 = all 9,000 images]
set -euo pipefail
cd "$(dirname "$0")/.."
CATQ=${CATQ:-build/catq}
S=${SHARED:-../shared}/assets
DATA=$S/cifar10/test.bin
RUNS=${RUNS:-"resnet20:w8a8-wsym:rtn resnet56:w8a8-wsym:rtn resnet20:w8a8:rtn resnet56:w8a8:rtn resnet20:w4a4:rtn resnet56:w4a4:rtn"}
MODELS_FROM=${MODELS_FROM:-bench/results/cnn_ptq_i250/models}
EXTRA=${EXTRA:-"resnet56_w2a2_qdrop_s0 resnet20_w2a4_brecq_s0+cat"}
OUT=${OUT:-bench/results/cnn_runtime}
LIMIT=${LIMIT:-0}
export OMP_NUM_THREADS=1 CATQ_THREADS=1
command -v jq >/dev/null || { echo "cnn_runtime: needs jq (scripts/setup.sh installs it)" >&2; exit 1; }
[ -f "$DATA" ] || { echo "cnn_runtime: $DATA not found (set SHARED)" >&2; exit 1; }
cmake --build build --target catq > /dev/null
mkdir -p "$OUT"
log=$OUT/commands.txt
: > "$log"
cmd() { echo "$*" >> "$log"; "$@"; }
lim=(); [ "$LIMIT" -gt 0 ] && lim=(--limit "$LIMIT")

fp_ips() {  # images/s of the FP32 ONNX model
  local m=$1 f=$OUT/$1_fp32.json
  [ -s "$f" ] || cmd "$CATQ" -q --json eval "$S/resnet-cifar10/$m.onnx" --data "$DATA" --split eval "${lim[@]}" > "$f"
  jq -r '.n / .fp32.seconds' "$f"
}

echo "| model | quantization | layers integer | convs writing codes (+ shortcut) | top-1 sim | top-1 int | equal top-1 decisions | FP32 img/s | sim img/s | int img/s | int / FP32 |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
row() {  # NAME CATQ_FILE MODEL
  local name=$1 q=$2 m=$3 e=$OUT/$(basename "$2" .catq).int.json
  [ -s "$e" ] || { cmd "$CATQ" -q --json eval "$q" --data "$DATA" --split eval --runtime int "${lim[@]}" > "$e.tmp" && mv "$e.tmp" "$e"; }
  local fp; fp=$(fp_ips "$m")
  jq -r --arg n "$name" --arg fp "$fp" --arg m "$m" \
    '"| \($m) | \($n) | \(.integer_runtime.integer_layers) / \(.integer_runtime.layers|length) | \(.integer_runtime.convs_writing_codes) (\(.integer_runtime.convs_adding_shortcut)) | \(.quantized.top1*100|round/100) | \(.integer_runtime.top1*100|round/100) | \(.integer_runtime.top1_agreement_with_simulation*100|round/100) % | \($fp|tonumber|round) | \(.quantized.images_per_s|round) | \(.integer_runtime.images_per_s|round) | \((.integer_runtime.images_per_s / ($fp|tonumber))*100|round/100) |"' "$e"
}
for r in $RUNS; do
  IFS=: read -r m bits method <<< "$r"
  q=$OUT/${m}_${bits}_${method}.catq
  [ -s "$q" ] || cmd "$CATQ" -q quantize "$S/resnet-cifar10/$m.onnx" --method "$method" --bits "$bits" --calib "$DATA" \
                     --seed 0 -o "$q" > /dev/null
  row "${bits} ${method}" "$q" "$m"
done
for x in $EXTRA; do
  q=$MODELS_FROM/$x.catq
  [ -s "$q" ] && row "$x" "$q" "${x%%_*}"
done
