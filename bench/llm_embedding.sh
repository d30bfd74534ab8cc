#!/usr/bin/env bash
# Token-embedding quantization (issues 4 and 6): perplexity under the reference protocol (first 12,000 characters
# of the TinyStories validation head, 256-token windows) with the embedding table at 8 / 4 / 2 bits per token row,
# alone and on top of W4A8 (RTN weights with MSE clip search, per-token activations; LM head FP). Calibration
# text: the characters after the scored ones (catq eval's default). Not part of `make test`.
# Usage: MODELS ["stories260K:../shared/assets/llama2c/stories260K.bin tiny3m:bench/results/llm_train/tiny3m.bin"]
#        OUT [bench/results/llm_embedding]
set -euo pipefail
cd "$(dirname "$0")/.."
CATQ=${CATQ:-build/catq}
S=${SHARED:-../shared}/assets
TEXT=$S/text/tinystories_valid_head.txt
TOK=$S/llama2c/tok512.bin
MODELS=${MODELS:-"stories260K:$S/llama2c/stories260K.bin tiny3m:bench/results/llm_train/tiny3m.bin"}
OUT=${OUT:-bench/results/llm_embedding}
command -v jq >/dev/null || { echo "llm_embedding: needs jq (scripts/setup.sh installs it)" >&2; exit 1; }
cmake --build build --target catq > /dev/null
mkdir -p "$OUT"
: > "$OUT/commands.txt"
echo "| model | FP32 | emb8 | emb4 | emb2 | W4A8 | W4A8 + emb8 | W4A8 + emb4 | W4A8 + emb2 |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for spec in $MODELS; do
  name=${spec%%:*}; model=${spec#*:}
  [ -f "$model" ] || { echo "| $name | (missing: $model) ||||||||"; continue; }
  line="| $name"
  fp=""
  for c in emb8 emb4 emb2 w4a8 w4a8_emb8 w4a8_emb4 w4a8_emb2; do
    f=$OUT/${name}_$c.json
    if [ ! -s "$f" ]; then
      echo "catq --json eval $model --tokenizer $TOK --text $TEXT --quant bench/configs/llm_$c.json" >> "$OUT/commands.txt"
      "$CATQ" -q --json eval "$model" --tokenizer "$TOK" --text "$TEXT" --quant "bench/configs/llm_$c.json" > "$f.tmp"
      mv "$f.tmp" "$f"
    fi
    [ -z "$fp" ] && fp=$(jq -r '.fp32.ppl*10000|round/10000' "$f") && line="$line | $fp"
    line="$line | $(jq -r '.quantized.ppl*10000|round/10000' "$f")"
  done
  echo "$line |"
done
