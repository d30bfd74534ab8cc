#!/usr/bin/env bash
# catq-optimized GGUF vs llama.cpp's own quantizer (issue 16): for each model and GGUF type, files written by
#   ggml-rtn      llama.cpp's quantizer without an importance matrix (llama-quantize's default)
#   ggml-imatrix  llama.cpp's quantizer with an importance matrix (diag of each layer's calibration H)
#   catq-rtn      catq's encoders alone (catq export --type T, = catq quantize --gguf T --weights rtn)
#   catq-imatrix  catq's encoders with the importance matrix
#   catq-gptq     catq's GPTQ on the grid of catq's imatrix encoding
#   ggml+gptq     catq's GPTQ on the grid of llama.cpp's imatrix encoding
#   catq-M+T      (opt-in via METHODS) catq's method M with --transform T first: awq (scales folded into the norms /
#                 ffn_up / V, the file keeps its size) or quarot (the offline rotation; unties the head)
# and, for each file: bytes, bits per weight, perplexity in catq (`catq eval FILE.gguf`, the decoded weights in
# fp32) and in llama.cpp (node-llama-cpp, tests/peers/llama_cpp_check.mjs, the same token windows), and the share of
# the FP-to-ggml-rtn perplexity gap that the file closes (llama.cpp's numbers), and llama.cpp's decode speed on it
# (128 greedy tokens from BOS, 1 thread: the same kernels should give the same speed for the same type). Calibration: 24,000 characters after
# the first 12,000 (the scored text), windows of 256 tokens.
# Usage (environment; defaults in brackets):
#   MODELS ["stories260K:../shared/assets/llama2c/stories260K.bin:../shared/assets/llama2c/tok512.bin"]  name:model[:tokenizer]
#   TYPES ["q4_0 q4_k q3_k q2_k"] (recipes too: q4_k_m, ...)   METHODS [all six]
#   TEXT [../shared/assets/text/tinystories_valid_head.txt]
#   TARGETS [""]  bits-per-weight targets (e.g. "3.5 4.5"): catq-imatrix and catq-gptq with --target-bpw B, per
#                 tensor types q2_k..q8_0 by the knapsack (rows "bpw3.5")
#   OUT [bench/results/gguf]   CATQ_THREADS [1]
# Writes $OUT/results.jsonl and prints a markdown table (docs/results/gguf.md).
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SHARED:-../shared}/assets
MODELS=${MODELS:-"stories260K:$S/llama2c/stories260K.bin:$S/llama2c/tok512.bin"}
TYPES=${TYPES:-"q4_0 q4_k q3_k q2_k"}
METHODS=${METHODS:-"ggml-rtn ggml-imatrix catq-rtn catq-imatrix catq-gptq ggml+gptq"}
TEXT=${TEXT:-$S/text/tinystories_valid_head.txt}
TARGETS=${TARGETS:-}
OUT=${OUT:-bench/results/gguf}
export CATQ_THREADS=${CATQ_THREADS:-1}
CATQ=build/catq
GGML=build/catq_bench_gguf_ggml
PEERS=${CATQ_PEERS:-$PWD/.cache/peers}
[ -x "$GGML" ] || cmake --build build --target catq_bench_gguf_ggml > /dev/null
mkdir -p "$OUT"
: > "$OUT/results.jsonl"

llama_run() {  # file windows -> llama.cpp's {ppl, decode_tokens_per_second} (128 greedy tokens, 1 thread)
  CATQ_PEERS="$PEERS" node tests/peers/llama_cpp_check.mjs "$1" "$2" 128 2> /dev/null | sed -n '/^{/,$p' |
    jq -c '{ppl, tps: .decode_tokens_per_second}'
}

for spec in $MODELS; do
  IFS=: read -r name model tok <<< "$spec"
  tokarg=(); [ -n "${tok:-}" ] && tokarg=(--tokenizer "$tok")
  d=$OUT/$name; mkdir -p "$d"
  "$GGML" "$model" "${tokarg[@]}" --text "$TEXT" --windows-out "$d/windows.json"
  fp_catq=$("$CATQ" --json eval "$model" "${tokarg[@]}" --text "$TEXT" | jq '.fp32.ppl')
  "$CATQ" export "$model" "${tokarg[@]}" --type f32 -o "$d/f32.gguf" > /dev/null
  r=$(llama_run "$d/f32.gguf" "$d/windows.json")
  echo "{\"model\":\"$name\",\"type\":\"f32\",\"method\":\"fp\",\"bytes\":$(stat -c %s "$d/f32.gguf"),\"ppl_catq\":$fp_catq,\"ppl_llama\":$(jq .ppl <<< "$r"),\"llama_tps\":$(jq .tps <<< "$r")}" >> "$OUT/results.jsonl"
  for type in $TYPES $(for b in $TARGETS; do echo "bpw$b"; done); do
    methods=$METHODS
    case $type in bpw*) methods="catq-imatrix catq-gptq" ;; esac
    for method in $methods; do
      f=$d/$type-$method.gguf
      start=$(date +%s.%N)
      case $method in
        ggml-*) "$GGML" "$model" "${tokarg[@]}" --text "$TEXT" --type "$type" --weights "${method#ggml-}" -o "$f" > "$f.json" ;;
        ggml+gptq) "$GGML" "$model" "${tokarg[@]}" --text "$TEXT" --type "$type" --weights gptq -o "$f" > "$f.json" ;;
        catq-*) case $type in bpw*) typearg=(--target-bpw "${type#bpw}") ;; *) typearg=(--gguf "$type") ;; esac
                m=${method#catq-}; tr=none
                case $m in *+*) tr=${m#*+}; m=${m%%+*} ;; esac
                "$CATQ" --json quantize "$model" "${tokarg[@]}" --text "$TEXT" --skip-chars 12000 "${typearg[@]}" \
                  --weights "$m" --transform "$tr" -o "$f" > "$f.json" ;;
      esac
      secs=$(echo "$(date +%s.%N) - $start" | bc)
      bpw=$(jq '.bits_per_weight' "$f.json")
      pc=$("$CATQ" --json eval "$f" --text "$TEXT" | jq '.fp32.ppl')
      r=$(llama_run "$f" "$d/windows.json")
      echo "{\"model\":\"$name\",\"type\":\"$type\",\"method\":\"$method\",\"bytes\":$(stat -c %s "$f"),\"bpw\":$bpw,\"ppl_catq\":$pc,\"ppl_llama\":$(jq .ppl <<< "$r"),\"llama_tps\":$(jq .tps <<< "$r"),\"seconds\":$secs}" | tee -a "$OUT/results.jsonl" >&2
    done
  done
done

# The table: per model and type, every method; gap closed = (PPL(ggml-rtn) − PPL) / (PPL(ggml-rtn) − PPL(FP)), llama.cpp's PPL.
jq -rs '
  (map(select(.method == "fp")) | map({(.model): .}) | add) as $fp
  | (map(select(.method == "ggml-rtn")) | map({(.model + "/" + .type): .ppl_llama}) | add) as $base
  | "| model | type | method | file bytes | bpw | PPL catq | PPL llama.cpp | llama.cpp / catq | gap to FP closed | llama.cpp decode tok/s |",
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    (.[] | select(.method == "fp") | "| \(.model) | f32 | FP | \(.bytes) | 32 | \(.ppl_catq * 10000 | round / 10000) | \(.ppl_llama * 10000 | round / 10000) | \((.ppl_llama / .ppl_catq) * 10000 | round / 10000) | | \(.llama_tps | round) |"),
    (.[] | select(.method != "fp")
     | . as $r | ($base[.model + "/" + .type]) as $b | ($fp[.model].ppl_llama) as $f
     | "| \(.model) | \(.type) | \(.method) | \(.bytes) | \(.bpw * 1000 | round / 1000) | \(.ppl_catq * 10000 | round / 10000) | \(.ppl_llama * 10000 | round / 10000) | \((.ppl_llama / .ppl_catq) * 10000 | round / 10000) | \(if $b != null and $b - $f > 0 then ((($b - .ppl_llama) / ($b - $f)) * 1000 | round / 10 | tostring) + " %" else "" end) | \(.llama_tps | round) |")
' "$OUT/results.jsonl"
