#!/usr/bin/env bash
# Llama integer runtime benchmark (issue 5): (1) agreement of the integer runtime with the fake-quant simulation on
# real models — perplexity under the reference protocol (first 12,000 characters of the TinyStories validation
# head, 256-token windows), KL and top-1 agreement; the same for the first window decoded token by token through the
# KV cache (the single-row GEMV path) — and greedy-decoding tokens/s of FP32, simulation and integer
# runtime; (2) end-to-end decode / prefill tokens/s on a random model with LLM-like layer shapes (bench/llm_runtime.cpp).
# Not part of `make test`. Usage (environment variables; defaults in brackets):
#   MODELS  ["stories260K:../shared/assets/llama2c/stories260K.bin tiny3m:bench/results/llm_train/tiny3m.bin"]
#           (tiny3m is trained by catq itself: docs/results/llm_ptq.md has the train-llm command)
#   CONFIGS [w8a8 w4a16g32 w4a8 w4a4 w3a16km]  (bench/configs/llm_<c>.json, or <name>_<c>.json when present)
#   OUT [bench/results/llm_runtime]    THREADS [1]    BIG_ARGS [] (extra arguments for catq_bench_llm)
set -euo pipefail
cd "$(dirname "$0")/.."
CATQ=${CATQ:-build/catq}
S=${SHARED:-../shared}/assets
TEXT=${TEXT:-$S/text/tinystories_valid_head.txt}
TOK=${TOK:-$S/llama2c/tok512.bin}
MODELS=${MODELS:-"stories260K:$S/llama2c/stories260K.bin tiny3m:bench/results/llm_train/tiny3m.bin"}
CONFIGS=${CONFIGS:-"w8a8 w4a16g32 w4a8 w4a4 w3a16km"}
OUT=${OUT:-bench/results/llm_runtime}
export OMP_NUM_THREADS=${THREADS:-1} CATQ_THREADS=${THREADS:-1}
command -v jq >/dev/null || { echo "llm_runtime: needs jq (scripts/setup.sh installs it)" >&2; exit 1; }
[ -f "$TEXT" ] || { echo "llm_runtime: $TEXT not found (set SHARED or TEXT)" >&2; exit 1; }
cmake --build build --target catq catq_bench_llm > /dev/null
mkdir -p "$OUT"
log=$OUT/commands.txt
: > "$log"
cmd() { echo "$*" >> "$log"; "$@"; }
tps() { jq -r '.tokens_per_s' "$1"; }

echo "## Integer runtime vs simulation (reference protocol), greedy decoding speed"
echo
echo "| model | config | integer / weight-only / simulated layers | PPL sim | PPL int | Δ PPL | KL | top-1 agreement | decode KL | decode top-1 agr. | tok/s FP32 | tok/s sim | tok/s int |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for spec in $MODELS; do
  name=${spec%%:*}; model=${spec#*:}
  if [ ! -f "$model" ]; then echo "| $name | (missing: $model) |||||||||" ; continue; fi
  f=$OUT/${name}_fp32.gen.json
  [ -s "$f" ] || cmd "$CATQ" --json generate "$model" --tokenizer "$TOK" --steps 200 --temperature 0 > "$f"
  fp_tps=$(tps "$f")
  for c in $CONFIGS; do
    cfg=bench/configs/llm_$c.json; [ -f "bench/configs/${name}_$c.json" ] && cfg=bench/configs/${name}_$c.json
    q=$OUT/${name}_$c.catq
    [ -s "$q" ] || cmd "$CATQ" -q quantize "$model" --tokenizer "$TOK" --text "$TEXT" --skip-chars 12000 \
                       --config "$cfg" -o "$q" > /dev/null
    e=$OUT/${name}_$c.int.json
    [ -s "$e" ] || { cmd "$CATQ" -q --json eval "$q" --text "$TEXT" --runtime int > "$e.tmp" && mv "$e.tmp" "$e"; }
    for r in sim int; do
      g=$OUT/${name}_$c.gen_$r.json
      [ -s "$g" ] || cmd "$CATQ" --json generate "$q" --runtime $r --steps 200 --temperature 0 > "$g"
    done
    jq -r --arg n "$name" --arg c "$c" --arg fp "$fp_tps" --arg ts "$(tps "$OUT/${name}_$c.gen_sim.json")" \
          --arg ti "$(tps "$OUT/${name}_$c.gen_int.json")" \
      '"| \($n) | \($c) | \(.integer_layers) / \(.weight_only_layers) / \(.simulated_layers) | \(.simulation.ppl*10000|round/10000) | \(.integer_runtime.ppl*10000|round/10000) | \(.ppl_rel_diff*100000|round/1000) % | \(.kl_mean*1e7|round/1e7) | \(.top1_agreement*10000|round/100) % | \(.decode.kl_mean*1e9|round/1e9) | \(.decode.top1_agreement*10000|round/100) % | \($fp|tonumber|round) | \($ts|tonumber|round) | \($ti|tonumber|round) |"' "$e"
  done
done
echo
echo "## End to end on a random model with LLM-like shapes"
echo
echo "build/catq_bench_llm ${BIG_ARGS:-} --threads ${THREADS:-1}" >> "$log"
[ -n "${SKIP_BIG:-}" ] || build/catq_bench_llm ${BIG_ARGS:-} --threads "${THREADS:-1}"
