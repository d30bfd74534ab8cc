#!/usr/bin/env bash
# Why CAT helps or not: on one quantized base model (default: ResNet-20 W2A2 PD-Quant, seed 0, from
# bench/cnn_ptq.sh), fit heads on fitting sets of different size and origin, with K and α chosen by
# cross-validation on the fitting set, and — as analysis only, never used for a choice — a fixed grid of (K, α)
# scored on the evaluation split.
# Usage: BASE=bench/results/cnn_ptq/models/resnet20_w2a2_pdquant_s0.catq MODEL=resnet20 bench/cat_analysis.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CATQ=${CATQ:-build/catq}
S=${SHARED:-../shared}/assets
MODEL=${MODEL:-resnet20}
BASE=${BASE:-bench/results/cnn_ptq/models/${MODEL}_w2a2_pdquant_s0.catq}
OUT=${OUT:-bench/results/cat_analysis}
DATA=$S/cifar10/test.bin
JPEG=$S/cifar10/train_jpeg10k.bin
ONNX=$S/resnet-cifar10/$MODEL.onnx
mkdir -p "$OUT"
[ -s "$BASE" ] || { echo "cat_analysis: base model $BASE not found (run bench/cnn_ptq.sh first)" >&2; exit 1; }
top1() { "$CATQ" -q --json eval "$1" --data "$DATA" --split eval | jq -r 'if .with_head then .with_head.top1 else .quantized.top1 end'; }

echo "Base: $BASE — top-1 $(printf %.2f "$(top1 "$BASE")") % on the evaluation split (no head)."
echo
echo "| fitting set | points | head | chosen K | chosen α | CV top-1 % (fitting set) | eval top-1 % |"
echo "|---|---:|---|---:|---:|---:|---:|"
fit() {  # LABEL HEAD ARGS...
  local label=$1 head=$2; shift 2
  local f=$OUT/$(echo "$label-$head" | tr ' /+,' '____').catq
  local j
  j=$("$CATQ" -q --json quantize "$ONNX" --from "$BASE" --head "$head" --calib "$DATA" "$@" -o "$f")
  local k a cv pts
  pts=$(jq -r '.head.points' <<< "$j"); k=$(jq -r '.head.k' <<< "$j"); a=$(jq -r '.head.alpha' <<< "$j")
  cv=$(jq -r --argjson k "$k" --argjson a "$a" '.head.selection.table[] | select(.k == $k and .alpha == $a) | .cv_accuracy * 100' <<< "$j" | head -1)
  echo "| $label | $pts | $head | $k | $a | $(printf %.2f "$cv") | $(printf %.2f "$(top1 "$f")") |"
}
for head in affine cat; do
  fit "calibration split (1,000)" $head
  fit "calibration split + 4 crop/flip copies" $head --fit-augment 4
  fit "train_jpeg10k (10,000; JPEG)" $head --fit-data "$JPEG"
  fit "train_jpeg10k + 2 crop/flip copies" $head --fit-data "$JPEG" --fit-augment 2
done

echo
echo "Analysis grid (fitted on train_jpeg10k, scored on the evaluation split; not used to choose anything):"
echo
echo "| K | α = 0.2 | α = 0.4 | α = 0.6 | α = 1.0 |"
echo "|---:|---:|---:|---:|---:|"
for k in 1 4 16 64 256; do
  printf "| %s |" "$k"
  for a in 0.2 0.4 0.6 1.0; do
    f=$OUT/grid_k${k}_a${a}.catq
    "$CATQ" -q quantize "$ONNX" --from "$BASE" --head cat --cat-k "$k" --cat-alpha "$a" --calib "$DATA" \
      --fit-data "$JPEG" -o "$f" > /dev/null
    printf " %.2f |" "$(top1 "$f")"
  done
  echo
done
