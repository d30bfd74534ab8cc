#!/usr/bin/env bash
# catq's lean runtime vs llama.cpp on the SAME GGUF files, same threads, same prompt / generation lengths, in one run
# (issue 17). For each model shape: a random Llama in HF layout (bench/make_random_hf) -> `catq export --type T` ->
# `catq bench` and llama.cpp (npm node-llama-cpp, prebuilt CPU build; bench/peers/llama_cpp_bench.mjs).
#   bench/vs_llamacpp.sh                       # shape 354m (dim 2048, ffn 5632, 8 layers, GQA 32/4, vocab 512)
#   SHAPES="354m 1b" TYPES="q4_0 q8_0" THREADS="1 2" P=256 N=64 REPS=3 OUT=bench/results/vs_llamacpp bench/vs_llamacpp.sh
# CONFIGS (default "w4a8 w4a4 w8a8"; "" for none): catq's own quantized .catq files (bench/configs/llm_CFG.json, RTN,
# per-channel weights, per-token activations, calibrated on the docs text) on catq's lean runtime, each against
# llama.cpp on the GGUF of the same weight bits (w8* -> q8_0, else q4_0), in the same run.
# Shapes: 354m (as above), 1b-body (Llama-3.2-1B's blocks: dim 2048, ffn 8192, 16 layers, GQA 32/8, with a vocabulary
# of 512 so that a byte-level BPE trained on docs/*.md covers it), 1b (Llama-3.2-1B itself: those blocks, a 128,256
# vocabulary and the LM head tied to the embedding; the 512-token BPE padded with 127,744 reserved special tokens).
# Prints a markdown table (tokens/s and catq / llama.cpp ratios) and writes OUT/vs_llamacpp.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
SHAPES=${SHAPES:-354m}
TYPES=${TYPES:-q4_0 q8_0}
CONFIGS=${CONFIGS-w4a8 w4a4 w8a8}
THREADS=${THREADS:-1 2}
P=${P:-256}
N=${N:-64}
REPS=${REPS:-3}
OUT=${OUT:-bench/results/vs_llamacpp}
WORK=${WORK:-/tmp/catq_vs_llamacpp}
PEERS=${CATQ_PEERS:-$PWD/.cache/peers}
mkdir -p "$OUT" "$WORK"
cmake --build build --target catq catq_bench_make_random_hf >/dev/null
if [ ! -d "$PEERS/node_modules/node-llama-cpp" ]; then
  echo "vs_llamacpp: node-llama-cpp is not installed in $PEERS (scripts/setup.sh installs it)" >&2
  exit 1
fi

shape_args() {
  case "$1" in
    354m) echo "--shape custom --dim 2048 --ffn 5632 --layers 8 --heads 32 --kv-heads 4 --vocab 512" ;;
    1b-body) echo "--shape custom --dim 2048 --ffn 8192 --layers 16 --heads 32 --kv-heads 8 --vocab 512" ;;
    1b) echo "--shape llama3.2-1b" ;;
    *) echo "vs_llamacpp: unknown shape $1 (354m, 1b-body, 1b)" >&2; exit 2 ;;
  esac
}

tcsv=$(echo "$THREADS" | tr ' ' ',')
json="[]"
printf '| shape | type | threads | catq pp%s | llama.cpp pp%s | ratio | catq tg%s | llama.cpp tg%s | ratio |\n' "$P" "$P" "$N" "$N" > "$OUT/vs_llamacpp.md"
printf '|---|---|---:|---:|---:|---:|---:|---:|---:|\n' >> "$OUT/vs_llamacpp.md"
# The GGUF of SHAPE at TYPE (exported once).
gguf_of() {
  local g="$WORK/$1-$3.gguf"
  [ -f "$g" ] || build/catq export "$2" --type "$3" -o "$g" >&2
  echo "$g"
}

# llama.cpp's figures are measured once per GGUF and thread count in this run (several catq models share a peer).
RUN_CACHE=$(mktemp -d)
trap 'rm -rf "$RUN_CACHE"' EXIT

# catq bench on MODEL and llama.cpp on GGUF, one table row per thread count.
compare() {
  local shape=$1 label=$2 model=$3 gguf=$4 catq_json ref row th
  catq_json=$(build/catq --json bench "$model" -p "$P" -n "$N" -t "$tcsv" -r "$REPS")
  for th in $THREADS; do
    local cache="$RUN_CACHE/$(basename "$gguf")-t$th.json"
    [ -s "$cache" ] || CATQ_PEERS="$PEERS" node bench/peers/llama_cpp_bench.mjs "$gguf" "$P" "$N" "$th" "$REPS" > "$cache"
    ref=$(cat "$cache")
    row=$(python3 - "$shape" "$label" "$th" "$P" "$N" <<PY
import json, sys
shape, typ, th, p, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
c = json.loads('''$catq_json''')
r = json.loads('''$ref''')
def ours(test):
    for x in c["results"]:
        if x["test"] == test and x["threads"] == th: return x["tokens_per_s"]
    return None
cp, ct = ours("pp" + p), ours("tg" + n)
lp, lt = r["pp_tokens_per_s"], r["tg_tokens_per_s"]
ratio = lambda a, b: a / b if a and b else None
print(json.dumps({"shape": shape, "type": typ, "threads": th, "catq_pp": cp, "llama_cpp_pp": lp, "pp_ratio": ratio(cp, lp),
                  "catq_tg": ct, "llama_cpp_tg": lt, "tg_ratio": ratio(ct, lt), "catq_runtime": c["runtime"],
                  "catq_weights": c["weights"]}))
PY
)
    json=$(python3 -c "import json,sys; a=json.loads(sys.argv[1]); a.append(json.loads(sys.argv[2])); print(json.dumps(a))" "$json" "$row")
    python3 -c "
import json,sys; r=json.loads(sys.argv[1]); f=lambda v: '-' if v is None else f'{v:.1f}'; g=lambda v: '-' if v is None else f'{v:.2f}x'
print(f\"| {r['shape']} | {r['type']} | {r['threads']} | {f(r['catq_pp'])} | {f(r['llama_cpp_pp'])} | {g(r['pp_ratio'])} | {f(r['catq_tg'])} | {f(r['llama_cpp_tg'])} | {g(r['tg_ratio'])} |\")
" "$row" >> "$OUT/vs_llamacpp.md"
  done
}

for shape in $SHAPES; do
  hf="$WORK/$shape-hf"
  [ -f "$hf/config.json" ] || build/catq_bench_make_random_hf $(shape_args "$shape") -o "$hf" >&2
  # llama.cpp needs a tokenizer in the GGUF: a 512-token byte-level BPE trained on the project's own docs.
  vocab=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['vocab_size'])" "$hf/config.json")
  [ -f "$hf/tokenizer.json" ] || { cat docs/*.md > "$WORK/docs.txt"; build/catq train-tokenizer "$WORK/docs.txt" --vocab "$vocab" --reserved $((vocab - 512)) -o "$hf/tokenizer.json" >&2; }
  docs_txt="$WORK/docs.txt"
  [ -f "$docs_txt" ] || cat docs/*.md > "$docs_txt"
  for type in $TYPES; do
    gguf=$(gguf_of "$shape" "$hf" "$type")
    compare "$shape" "$type" "$gguf" "$gguf"
  done
  for cfg in $CONFIGS; do
    case "$cfg" in w8*) peer=q8_0 ;; *) peer=q4_0 ;; esac
    model="$WORK/$shape-$cfg.catq"
    [ -f "$model" ] || build/catq quantize "$hf" --config "bench/configs/llm_$cfg.json" --text "$docs_txt" \
      --tokenizer "$hf/tokenizer.json" -o "$model" >&2
    compare "$shape" "catq $cfg vs $peer" "$model" "$(gguf_of "$shape" "$hf" "$peer")"
  done
done
echo "$json" > "$OUT/vs_llamacpp.json"
cat "$OUT/vs_llamacpp.md"
