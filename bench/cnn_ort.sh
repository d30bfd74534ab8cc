#!/usr/bin/env bash
# catq's integer CNN executor vs ONNX Runtime on the same quantized models (issue 5): each .catq is exported as QDQ
# ONNX and run by ONNX Runtime (npm onnxruntime-node, THREADS intra-op threads, all graph optimisations) and by catq
# (THREADS threads)
# on the CIFAR-10 evaluation split; top-1 of the simulation, catq and ORT, equal decisions, images/s of both, and of
# the FP32 graph in catq's executor and in ORT.
# Not part of `make test`. Usage (environment variables; defaults in brackets):
#   MODELS [the RTN models of bench/cnn_runtime.sh: bench/results/cnn_runtime/resnet{20,56}_{w8a8-wsym,w4a4}_rtn.catq]
#   LIMIT [0 = all 9,000 images]   BATCH [200]   THREADS [1] (the same for both)
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SHARED:-../shared}/assets
R=bench/results/cnn_runtime
MODELS=${MODELS:-"$R/resnet20_w8a8-wsym_rtn.catq $R/resnet56_w8a8-wsym_rtn.catq $R/resnet20_w4a4_rtn.catq $R/resnet56_w4a4_rtn.catq"}
for m in $MODELS; do
  [ -s "$m" ] || { echo "cnn_ort: $m not found (bench/cnn_runtime.sh writes the RTN models)" >&2; exit 1; }
done
THREADS=${THREADS:-1}
export OMP_NUM_THREADS=$THREADS CATQ_THREADS=$THREADS
cmake --build build --target catq_bench_ort > /dev/null
lim=(); [ "${LIMIT:-0}" -gt 0 ] && lim=(--limit "$LIMIT")
# shellcheck disable=SC2086
build/catq_bench_ort --data "$S/cifar10/test.bin" --batch "${BATCH:-200}" --threads "$THREADS" "${lim[@]}" $MODELS
