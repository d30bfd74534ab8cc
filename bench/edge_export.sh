#!/usr/bin/env bash
# Files out for the MLPerf Tiny models (issue 20), checked by their runtimes on the evaluation split:
#   - QDQ ONNX with the CAT / plain-affine head as ONNX ops, in ONNX Runtime (npm onnxruntime-node): every model of
#     bench/edge_ptq.sh with seed SEED (RTN / QDrop, ± heads, all bit widths), decisions equal to catq's simulation;
#   - int8 TFLite of W8A8 models with symmetric weights (quantized here: RTN and QDrop, seed SEED), read back and run
#     by catq's TFLite integer executor and by LiteRT (Google's TFLite runtime in WebAssembly, npm @litertjs/core),
#     next to the official int8 file on both.
# Usage (environment variables; defaults in brackets): MODELS [ic vww kws]  SEED [0]  ITERS [500]
#   PTQ [bench/results/edge_ptq]  OUT [bench/results/edge_export]   (CATQ_THREADS [1])
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SHARED:-../shared}/assets
CATQ=${CATQ:-build/catq}
MODELS=${MODELS:-"ic vww kws"}
SEED=${SEED:-0}
ITERS=${ITERS:-500}
PTQ=${PTQ:-bench/results/edge_ptq}
OUT=${OUT:-bench/results/edge_export}
export CATQ_THREADS=${CATQ_THREADS:-1}
mkdir -p "$OUT"
cmake --build build --target catq_bench_edge_verify > /dev/null
for key in $MODELS; do
  case $key in
    ic) stem=ic_resnet8; data=$S/cifar10/test.bin ;;
    vww) stem=vww_mobilenetv1; data=$S/mlperf-tiny/vww_eval1000_u8hwc.bin ;;
    kws) stem=kws_dscnn; data=$S/mlperf-tiny/kws_eval1000_mfcc_s8.bin ;;
    *) echo "edge_export: unknown model '$key'" >&2; exit 2 ;;
  esac
  models=()
  for meth in rtn qdrop; do
    m=$OUT/${key}_w8a8-wsym_${meth}_s$SEED.catq
    extra=()
    [ "$meth" = qdrop ] && extra=(--iters "$ITERS")
    [ -s "$m" ] || "$CATQ" -q quantize "$S/mlperf-tiny/${stem}_float.tflite" --method "$meth" --bits w8a8-wsym \
      --calib "$data" --seed "$SEED" "${extra[@]}" -o "$m"
    models+=("$m")
  done
  for m in "$PTQ"/models/${key}_*_s$SEED.catq "$PTQ"/models/${key}_*_s$SEED+*.catq; do
    [ -s "$m" ] && models+=("$m")
  done
  echo "### $key"
  build/catq_bench_edge_verify --data "$data" --official "$S/mlperf-tiny/${stem}_int8.tflite" "${models[@]}" |
    tee "$OUT/$key.md"
done
