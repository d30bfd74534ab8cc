#!/usr/bin/env bash
# Scale benchmark (issue 15): random Llama models of real shapes, written as sharded bf16 safetensors by
# build/catq_bench_make_random_hf (one tensor in memory at a time), quantized by `catq quantize --stream always`
# (weight-only RTN, layer by layer from the memory-mapped checkpoint). Reports peak RSS (/usr/bin/time -v), wall
# time, seconds per decoder layer and weights/s, at 1 and 2 threads. Not part of `make test` (minutes, GBs of disk).
# Usage (environment variables; defaults in brackets):
#   SHAPES  [llama3.2-1b llama3-8b]   CONFIGS [w4a16g128 bench/configs/llm_w4a16g32.json]   THREADS [1 2]
#   WORK    [/tmp/catq_scale] (needs ~17 GB free for the 8B shape + its outputs)   OUT [bench/results/llm_scale]
set -euo pipefail
cd "$(dirname "$0")/.."
CATQ=${CATQ:-build/catq}
SHAPES=${SHAPES:-"llama3.2-1b llama3-8b"}
CONFIGS=${CONFIGS:-"w4a16g128 bench/configs/llm_w4a16g32.json"}
THREADS=${THREADS:-"1 2"}
WORK=${WORK:-/tmp/catq_scale}
OUT=${OUT:-bench/results/llm_scale}
command -v jq >/dev/null || { echo "llm_scale: needs jq (scripts/setup.sh installs it)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "llm_scale: needs /usr/bin/time (Debian package time)" >&2; exit 1; }
cmake --build build --target catq catq_bench_make_random_hf > /dev/null
mkdir -p "$WORK" "$OUT"
log=$OUT/commands.txt
: > "$log"

echo "## Layer-streamed weight-only RTN on random models of real shapes"
echo
echo "| shape | quantized weights | bf16 GB | config | threads | peak RSS GB | wall s | s / layer | quantize M weights/s | .catq GB |"
echo "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"
for shape in $SHAPES; do
  model=$WORK/$shape
  if [ ! -f "$model/model.safetensors.index.json" ]; then
    echo "build/catq_bench_make_random_hf --shape $shape --dtype bf16 --shards 4 -o $model" >> "$log"
    build/catq_bench_make_random_hf --shape "$shape" --dtype bf16 --shards 4 -o "$model" >&2
  fi
  layers=$(jq -r '.num_hidden_layers' "$model/config.json")
  gb=$(du -sb "$model" | awk '{printf "%.2f", $1 / 1e9}')
  for cfg in $CONFIGS; do
    cname=$(basename "$cfg" .json)
    for t in $THREADS; do
      o=$WORK/${shape}_${cname}_t$t.catq
      j=$OUT/${shape}_${cname}_t$t.json
      tv=$OUT/${shape}_${cname}_t$t.time
      echo "OMP_NUM_THREADS=$t /usr/bin/time -v $CATQ --json quantize $model --config $cfg --stream always -o $o" >> "$log"
      OMP_NUM_THREADS=$t CATQ_THREADS=$t /usr/bin/time -v -o "$tv" "$CATQ" --json quantize "$model" --config "$cfg" \
        --stream always -o "$o" > "$j"
      rss=$(awk -F: '/Maximum resident set size/ {printf "%.2f", $2 / 1048576}' "$tv")
      wall=$(awk '/Elapsed \(wall clock\)/ {n = split($NF, a, ":"); s = 0; for (i = 1; i <= n; ++i) s = s * 60 + a[i]; printf "%.1f", s}' "$tv")
      params=$(jq -r '.quantization.weight_quantization.weights' "$j")
      wps=$(jq -r '.quantization.weight_quantization.weights_per_second / 1e6 | . * 10 | round / 10' "$j")
      size=$(stat -c %s "$o" | awk '{printf "%.2f", $1 / 1e9}')
      per=$(awk -v w="$wall" -v l="$layers" 'BEGIN {printf "%.2f", w / l}')
      echo "| $shape | $params | $gb | $cname | $t | $rss | $wall | $per | $wps | $size |"
      rm -f "$o"
    done
  done
done
