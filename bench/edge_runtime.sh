#!/usr/bin/env bash
# The integer CNN executor on the MLPerf Tiny models (issue 20): each float model is quantized with RTN at W8A8
# (symmetric weights: every convolution, depthwise included, fuses) and W4A4 (the academic setting: first conv and
# classifier 8-bit asymmetric), then `catq eval --runtime int` reports the plan (integer layers, convolutions writing
# codes) and catq_bench_ort times catq's integer executor, ONNX Runtime on the exported QDQ file, and both on the FP32
# graph, at 1 and 2 threads, on the evaluation split. Not part of `make test`.
# Usage (environment variables; defaults in brackets): MODELS [ic vww kws]  BITS [w8a8-wsym w4a4]  THREADS [1 2]
#   BATCH [100]  OUT [bench/results/edge_runtime]
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SHARED:-../shared}/assets
CATQ=${CATQ:-build/catq}
MODELS=${MODELS:-"ic vww kws"}
BITS=${BITS:-"w8a8-wsym w4a4"}
THREADS=${THREADS:-"1 2"}
OUT=${OUT:-bench/results/edge_runtime}
mkdir -p "$OUT"
cmake --build build --target catq_bench_ort > /dev/null
for key in $MODELS; do
  case $key in
    ic) stem=ic_resnet8; data=$S/cifar10/test.bin ;;
    vww) stem=vww_mobilenetv1; data=$S/mlperf-tiny/vww_eval1000_u8hwc.bin ;;
    kws) stem=kws_dscnn; data=$S/mlperf-tiny/kws_eval1000_mfcc_s8.bin ;;
    *) echo "edge_runtime: unknown model '$key'" >&2; exit 2 ;;
  esac
  models=()
  for b in $BITS; do
    m=$OUT/${key}_${b}_rtn.catq
    [ -s "$m" ] || "$CATQ" -q quantize "$S/mlperf-tiny/${stem}_float.tflite" --method rtn --bits "$b" --calib "$data" -o "$m"
    [ -s "$m.int.json" ] || "$CATQ" -q --json eval "$m" --data "$data" --split eval --runtime int > "$m.int.json"
    jq -r --arg m "$(basename "$m")" '"\($m): \(.integer_runtime.integer_layers) of \(.integer_runtime.layers | length) layers integer, \(.integer_runtime.convs_writing_codes) convolutions writing codes, decisions equal to the simulation on \(.integer_runtime.top1_agreement_with_simulation) %"' "$m.int.json"
    models+=("$m")
  done
  for t in $THREADS; do
    echo "### $key, $t thread(s)"
    OMP_NUM_THREADS=$t CATQ_THREADS=$t build/catq_bench_ort --data "$data" --batch "${BATCH:-100}" --threads "$t" "${models[@]}"
  done
done
