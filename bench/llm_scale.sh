#!/usr/bin/env bash
# Scale benchmark (issue 15): random Llama models of real shapes, written as sharded bf16 safetensors by
# build/catq_bench_make_random_hf (one tensor in memory at a time), quantized by `catq quantize --stream always`
# (block by block from the memory-mapped checkpoint: RTN needs no calibration; GPTQ calibrates on TEXT through a
# byte-level BPE tokenizer catq trains on the same text). Reports peak RSS (/usr/bin/time -v), wall time, seconds per
# decoder layer and weights/s, at 1 and 2 threads. Not part of `make test` (minutes, GBs of disk).
# Usage (environment variables; defaults in brackets):
#   SHAPES  [llama3.2-1b llama3-8b]   CONFIGS [w4a16g128 bench/configs/llm_w4a16g32.json]   THREADS [1 2]
#   WEIGHTS [rtn] (rtn and/or gptq)   TEXT [../shared/assets/text/tinystories_valid_head.txt]   CALIB_CHARS [8000]
#   WORK    [/tmp/catq_scale] (needs ~17 GB free for the 8B shape + its outputs)   OUT [bench/results/llm_scale]
#   LAYERS  [all] a cut of the shape with this many decoder blocks (every tensor of the real shape, embedding and head
#           included): a block's working set, hence the peak RSS, does not depend on how many blocks follow, so
#           LAYERS=2 measures the 8B shape's GPTQ peak in ~15 minutes instead of hours
set -euo pipefail
cd "$(dirname "$0")/.."
CATQ=${CATQ:-build/catq}
SHAPES=${SHAPES:-"llama3.2-1b llama3-8b"}
CONFIGS=${CONFIGS:-"w4a16g128 bench/configs/llm_w4a16g32.json"}
THREADS=${THREADS:-"1 2"}
WEIGHTS=${WEIGHTS:-rtn}
TEXT=${TEXT:-${SHARED:-../shared}/assets/text/tinystories_valid_head.txt}
CALIB_CHARS=${CALIB_CHARS:-8000}
WORK=${WORK:-/tmp/catq_scale}
LAYERS=${LAYERS:-}
OUT=${OUT:-bench/results/llm_scale}
command -v jq >/dev/null || { echo "llm_scale: needs jq (scripts/setup.sh installs it)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "llm_scale: needs /usr/bin/time (Debian package time)" >&2; exit 1; }
cmake --build build --target catq catq_bench_make_random_hf > /dev/null
mkdir -p "$WORK" "$OUT"
log=$OUT/commands.txt
: > "$log"

calib_args=()
if [[ " $WEIGHTS " == *" gptq "* ]]; then
  [ -f "$TEXT" ] || { echo "llm_scale: GPTQ needs calibration text, TEXT=$TEXT is missing" >&2; exit 1; }
  tok=$WORK/tokenizer/tokenizer.json
  if [ ! -f "$tok" ]; then
    echo "$CATQ train-tokenizer $TEXT --vocab 1024 -o $tok" >> "$log"
    "$CATQ" -q train-tokenizer "$TEXT" --vocab 1024 -o "$tok" >&2
  fi
  calib_args=(--tokenizer "$tok" --text "$TEXT" --calib-chars "$CALIB_CHARS")
fi

echo "## Layer-streamed quantization on random models of real shapes"
echo
echo "| shape | quantized weights | bf16 GB | config | weights | calibration tokens | threads | peak RSS GiB | wall s | s / layer | quantize M weights/s | .catq GB |"
echo "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"
for shape in $SHAPES; do
  model=$WORK/$shape cut=()
  [ -n "$LAYERS" ] && model=$WORK/$shape-${LAYERS}l cut=(--layers "$LAYERS")
  if [ ! -f "$model/model.safetensors.index.json" ]; then
    echo "build/catq_bench_make_random_hf --shape $shape ${cut[*]} --dtype bf16 --shards 4 -o $model" >> "$log"
    build/catq_bench_make_random_hf --shape "$shape" "${cut[@]}" --dtype bf16 --shards 4 -o "$model" >&2
  fi
  layers=$(jq -r '.num_hidden_layers' "$model/config.json")
  gb=$(du -sb "$model" | awk '{printf "%.2f", $1 / 1e9}')
  for cfg in $CONFIGS; do for w in $WEIGHTS; do
    cname=$(basename "$cfg" .json)
    args=(); [ "$w" = gptq ] && args=(--weights gptq "${calib_args[@]}")
    for t in $THREADS; do
      tag=$(basename "$model")_${cname}_${w}_t$t
      o=$WORK/$tag.catq j=$OUT/$tag.json tv=$OUT/$tag.time
      echo "OMP_NUM_THREADS=$t /usr/bin/time -v $CATQ --json quantize $model --config $cfg ${args[*]} --stream always -o $o" >> "$log"
      OMP_NUM_THREADS=$t CATQ_THREADS=$t /usr/bin/time -v -o "$tv" "$CATQ" -q --json quantize "$model" --config "$cfg" \
        "${args[@]}" --stream always -o "$o" > "$j"
      rss=$(awk -F: '/Maximum resident set size/ {printf "%.2f", $2 / 1048576}' "$tv")
      wall=$(awk '/Elapsed \(wall clock\)/ {n = split($NF, a, ":"); s = 0; for (i = 1; i <= n; ++i) s = s * 60 + a[i]; printf "%.1f", s}' "$tv")
      params=$(jq -r '.quantization.weight_quantization.weights' "$j")
      wps=$(jq -r '.quantization.weight_quantization.weights_per_second / 1e6 | . * 10 | round / 10' "$j")
      ctoks=$(jq -r 'if .calibration.needed then .calibration.windows * .calibration.window else 0 end' "$j")
      size=$(stat -c %s "$o" | awk '{printf "%.2f", $1 / 1e9}')
      per=$(awk -v w="$wall" -v l="$layers" 'BEGIN {printf "%.2f", w / l}')
      echo "| $(basename "$model") | $params | $gb | $cname | $w | $ctoks | $t | $rss | $wall | $per | $wps | $size |"
      rm -f "$o"
    done
  done; done
done
