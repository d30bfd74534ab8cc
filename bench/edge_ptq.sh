#!/usr/bin/env bash
# Edge CNN benchmark (issue 20): the MLPerf Tiny models (TFLite) — ResNet-8 / CIFAR-10 (ic), MobileNetV1-0.25 /
# visual wake words (vww), DS-CNN / keyword spotting (kws). For each model: the float model's accuracy (the whole
# file, MLPerf Tiny's target, and the evaluation split), the official int8 TFLite file as catq's TFLite integer
# executor runs it, and catq's PTQ — RTN and QDrop, each alone, + plain affine head, + CAT head — at W8A8, W4A8,
# W4A4, W2A4 (the academic setting of docs/ptq.md) over several seeds, with KL and top-1 agreement against the
# float model on the evaluation split.
#
# Splits (docs/tflite.md): ic calibrates on the 1,000-image calibration split of cifar10/test.bin and is evaluated on
# the other 9,000; vww and kws calibrate on records i % 5 == 0 (200) and are evaluated on the other 800. Heads are
# fitted on the calibration images. Nothing is chosen on the evaluation split.
#
# Usage: bench/edge_ptq.sh        (environment variables; defaults in brackets)
#   MODELS [ic vww kws]   BITS [w8a8 w4a8 w4a4 w2a4]   SEEDS [0 1 2]   METHODS [rtn qdrop]
#   ITERS  [500] reconstruction iterations per unit (the project default is 1,000, the papers' 20,000: reduced so
#          the whole table fits a shared 2-core machine)
#   JOBS   [1] runs in parallel; every run uses CATQ_THREADS [1] threads
#   OUT    [bench/results/edge_ptq]  .catq files, per-run JSON, commands.txt, table.md
# Resumable: a run whose evaluation JSON exists is skipped. Prints the markdown table at the end (bench/edge_table.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export CATQ=${CATQ:-build/catq}
export S=${SHARED:-../shared}/assets
MODELS=${MODELS:-"ic vww kws"}
BITS=${BITS:-"w8a8 w4a8 w4a4 w2a4"}
SEEDS=${SEEDS:-"0 1 2"}
METHODS=${METHODS:-"rtn qdrop"}
export ITERS=${ITERS:-500}
export OUT=${OUT:-bench/results/edge_ptq}
JOBS=${JOBS:-1}
export CATQ_THREADS=${CATQ_THREADS:-1}
mkdir -p "$OUT/models" "$OUT/runs"

# model key -> "file stem|data file"
spec() {
  case $1 in
    ic) echo "ic_resnet8|$S/cifar10/test.bin" ;;
    vww) echo "vww_mobilenetv1|$S/mlperf-tiny/vww_eval1000_u8hwc.bin" ;;
    kws) echo "kws_dscnn|$S/mlperf-tiny/kws_eval1000_mfcc_s8.bin" ;;
    *) echo "edge_ptq: unknown model '$1' (ic, vww, kws)" >&2; exit 2 ;;
  esac
}
export -f spec

# Writes catq's JSON output of ARGS to FILE (skipped when FILE exists), logging the command.
run_json() {
  local file=$1; shift
  [ -s "$file" ] && return 0
  echo "catq --json $*" >> "$OUT/commands.txt"
  local t0 t1
  t0=$(date +%s%N)
  "$CATQ" -q --json "$@" > "$file.tmp" && mv "$file.tmp" "$file"
  t1=$(date +%s%N)
  echo "{\"wall_seconds\": $(( (t1 - t0) / 1000000 ))e-3, \"threads\": \"$CATQ_THREADS\"}" > "${file%.json}.time.json"
}
export -f run_json

# The float and the official int8 model of MODEL on the whole file and on the evaluation split.
reference() {
  local key=$1 stem data
  IFS='|' read -r stem data <<< "$(spec "$key")"
  local f=$S/mlperf-tiny/${stem}_float.tflite i=$S/mlperf-tiny/${stem}_int8.tflite
  for split in all eval; do
    run_json "$OUT/runs/${key}_fp32_$split.json" eval "$f" --data "$data" --split "$split"
    run_json "$OUT/runs/${key}_tflite_int8_$split.json" eval "$i" --data "$data" --split "$split" --reference "$f"
  done
}
export -f reference

# A base method at BITS / SEED and its two heads: quantize, then evaluate against the float model.
job() {
  local key=$1 b=$2 s=$3 meth=$4 stem data
  IFS='|' read -r stem data <<< "$(spec "$key")"
  local f=$S/mlperf-tiny/${stem}_float.tflite base=${key}_${b}_${meth}_s$s
  local extra=()
  [ "$meth" != rtn ] && extra=(--iters "$ITERS")
  echo ">> $base" >&2
  if [ ! -s "$OUT/runs/$base.eval.json" ]; then
    run_json "$OUT/runs/$base.quantize.json" quantize "$f" --method "$meth" --bits "$b" --calib "$data" --seed "$s" \
      "${extra[@]}" -o "$OUT/models/$base.catq"
    run_json "$OUT/runs/$base.eval.json" eval "$OUT/models/$base.catq" --data "$data" --split eval --reference "$f"
  fi
  for h in affine cat; do
    [ -s "$OUT/runs/$base+$h.eval.json" ] && continue
    run_json "$OUT/runs/$base+$h.quantize.json" quantize "$f" --from "$OUT/models/$base.catq" --head "$h" \
      --calib "$data" --seed "$s" -o "$OUT/models/$base+$h.catq"
    run_json "$OUT/runs/$base+$h.eval.json" eval "$OUT/models/$base+$h.catq" --data "$data" --split eval --reference "$f"
  done
}
export -f job

for m in $MODELS; do reference "$m"; done
for m in $MODELS; do for b in $BITS; do for s in $SEEDS; do for meth in $METHODS; do
  echo "$m $b $s $meth"
done; done; done; done | xargs -P "$JOBS" -L 1 bash -c 'job "$@"' _
bench/edge_table.sh "$OUT" | tee "$OUT/table.md"
