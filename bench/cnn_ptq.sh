#!/usr/bin/env bash
# Vision PTQ benchmark: ResNet-20 / ResNet-56 (CIFAR-10) at W4A4, W2A4, W4A2, W2A2 in the academic setting, for
# RTN (MSE observer), AdaRound, BRECQ, QDrop, PD-Quant, PD-Quant + plain affine, PD-Quant + CAT, BRECQ + CAT and
# the weight-cluster affine method, over several seeds. Calibration and head fitting use the 1,000-image
# calibration split of test.bin; accuracy is measured on the 9,000-image evaluation split (never used for a choice).
#
# Usage: bench/cnn_ptq.sh        (environment variables below; defaults in brackets)
#   MODELS  [resnet20 resnet56]          BITS    [w4a4 w2a4 w4a2 w2a2]        SEEDS [0 1 2]
#   ITERS   [1000] iterations per unit   METHODS [rtn adaround brecq qdrop pdquant wca]  (heads follow their base)
#   JOBS    [1] runs in parallel; with JOBS > 1 each run uses one thread (CATQ_THREADS=1), so wall times are
#           single-core times
#   OUT     [bench/results/cnn_ptq]      .catq files, per-run JSON, commands.txt and table.md
#   EXTRA   extra `catq quantize` options for the base runs (e.g. "--calib-size 512")
# Resumable: a run whose evaluation JSON exists is skipped. Prints the markdown table at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export CATQ=${CATQ:-build/catq}
export S=${SHARED:-../shared}/assets
MODELS=${MODELS:-"resnet20 resnet56"}
BITS=${BITS:-"w4a4 w2a4 w4a2 w2a2"}
SEEDS=${SEEDS:-"0 1 2"}
export ITERS=${ITERS:-1000}
METHODS=${METHODS:-"rtn adaround brecq qdrop pdquant wca"}
export OUT=${OUT:-bench/results/cnn_ptq}
JOBS=${JOBS:-1}
export EXTRA=${EXTRA:-}
export DATA=$S/cifar10/test.bin
[ "$JOBS" -gt 1 ] && export CATQ_THREADS=1
mkdir -p "$OUT/models" "$OUT/runs"

# One quantize (+ eval) run: NAME, then catq quantize arguments. Skipped when its eval JSON exists.
run_one() {
  local name=$1; shift
  local q=$OUT/runs/$name.quantize.json e=$OUT/runs/$name.eval.json
  [ -s "$e" ] && return 0
  echo "catq --json quantize $*" >> "$OUT/commands.txt"
  local t0 t1
  t0=$(date +%s%N)
  "$CATQ" --json quantize "$@" > "$q.tmp" && mv "$q.tmp" "$q"
  t1=$(date +%s%N)
  echo "{\"wall_seconds\": $(( (t1 - t0) / 1000000 ))e-3, \"threads\": \"${CATQ_THREADS:-all}\"}" > "$OUT/runs/$name.time.json"
  echo "catq --json eval $OUT/models/$name.catq --data $DATA --split eval" >> "$OUT/commands.txt"
  "$CATQ" --json eval "$OUT/models/$name.catq" --data "$DATA" --split eval > "$e.tmp" && mv "$e.tmp" "$e"
}
# A base method and the heads that build on it: MODEL BITS SEED METHOD.
job() {
  local m=$1 b=$2 s=$3 meth=$4
  local onnx=$S/resnet-cifar10/$m.onnx base=${m}_${b}_${meth}_s$s
  local extra=()
  [ "$meth" != rtn ] && extra=(--iters "$ITERS")
  echo ">> $base" >&2
  # shellcheck disable=SC2086
  run_one "$base" "$onnx" --method "$meth" --bits "$b" --calib "$DATA" --seed "$s" "${extra[@]}" $EXTRA -o "$OUT/models/$base.catq"
  local heads=()
  [ "$meth" = pdquant ] && heads=(affine cat)
  [ "$meth" = brecq ] && heads=(cat)
  for h in "${heads[@]}"; do
    run_one "$base+$h" "$onnx" --from "$OUT/models/$base.catq" --head "$h" --calib "$DATA" --seed "$s" \
      -o "$OUT/models/$base+$h.catq"
  done
}
export -f run_one job

for m in $MODELS; do for b in $BITS; do for s in $SEEDS; do for meth in $METHODS; do
  echo "$m $b $s $meth"
done; done; done; done | xargs -P "$JOBS" -L 1 bash -c 'job "$@"' _
bench/cnn_ptq_table.sh "$OUT" | tee "$OUT/table.md"
