#!/usr/bin/env bash
# Scaling-law harness for compute-optimal QAT (issue 6 item 4; methods.md §5). Trains small Llama models from scratch
# on the available text with `catq train-llm --qat-bits B --qat-fraction f` (FP phase, then weights-only QAT:
# SEQ at 2 bits, LSQ at 4; per-channel; embeddings and LM head FP) for several sizes, token budgets and QAT
# fractions, records the final validation NLL of the quantized model (f = 0: RTN after a full FP run), compares
# the fused and classic schedules, then fits the loss law with a Huber loss (`catq qat-fit`) and prints the
# optimal fraction per (N, D, B) next to the published formula. Seeded; every run is a JSON record in OUT.
# Compute: each run's wall time is in its record; the summary prints the total.
# Usage: OUT=bench/results/co_qat SIZES="64:2:172 96:2:256" STEPS="400 1600" BITS="2 4" \
#        FRACS="0 0.05 0.15 0.3 0.5 0.8" CLASSIC_SIZES="64:2:172" CLASSIC_BITS=4 bench/co_qat.sh
# CARRY=1: every run continues the AdamW moments across the FP -> QAT switch (--qat-carry-optimizer), so the
# fused-vs-classic comparison is not confounded by the optimizer reset; use another OUT (run names do not say it).
set -euo pipefail
cd "$(dirname "$0")/.."
CATQ=${CATQ:-build/catq}
S=${SHARED:-../shared}/assets
OUT=${OUT:-bench/results/co_qat}
SIZES=${SIZES:-"64:2:172 96:2:256"}
STEPS=${STEPS:-"400 1600"}
BITS=${BITS:-"2 4"}
FRACS=${FRACS:-"0 0.05 0.15 0.3 0.5 0.8"}
CLASSIC_SIZES=${CLASSIC_SIZES:-"64:2:172"}
CLASSIC_BITS=${CLASSIC_BITS:-4}
SEED=${SEED:-0}
BATCH=${BATCH:-8}
SEQ=${SEQ:-128}
CARRY=${CARRY:-}
mkdir -p "$OUT"
run() {  # size steps bits frac schedule
  local dim=${1%%:*} rest=${1#*:}; local layers=${rest%%:*} hidden=${rest#*:}
  local name="d${dim}l${layers}_t$2_b$3_f$4_$5_s$SEED"
  [ -s "$OUT/$name.json" ] && return 0
  "$CATQ" -q --json train-llm --text "$S/text/tinystories_valid_head.txt" --tokenizer "$S/llama2c/tok512.bin" \
    --dim "$dim" --layers "$layers" --heads 4 --kv-heads 2 --hidden "$hidden" --seq-len 256 --steps "$2" \
    --batch "$BATCH" --seq "$SEQ" --qat-bits "$3" --qat-fraction "$4" --qat-schedule "$5" --val-windows 32 \
    --seed "$SEED" ${CARRY:+--qat-carry-optimizer} -o "$OUT/$name.catq" > "$OUT/$name.tmp"
  mv "$OUT/$name.tmp" "$OUT/$name.json"
  rm -f "$OUT/$name.catq"
}
for size in $SIZES; do
  for steps in $STEPS; do
    for bits in $BITS; do
      for f in $FRACS; do run "$size" "$steps" "$bits" "$f" fused; done
    done
  done
done
for size in $CLASSIC_SIZES; do
  for steps in $STEPS; do
    for f in $FRACS; do [ "$f" = 0 ] || run "$size" "$steps" "$CLASSIC_BITS" "$f" classic; done
  done
done
bench/co_qat_report.sh "$OUT"
