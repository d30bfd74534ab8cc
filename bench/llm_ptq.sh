#!/usr/bin/env bash
# LLM PTQ benchmark: perplexity of a Llama model under the reference protocol (first 12,000 characters of the
# TinyStories validation head, 256-token windows [BOS, t0..t254]) and a longer-context variant (512-token
# windows), for FP32 and W8A8, W4A16-g32, W4A8, W4A4 × transforms {none, SmoothQuant, block CAT k = 1 (RMS),
# QuaRot-style Hadamard rotation, block CAT with several k} × weights {RTN (MSE clip search), GPTQ}; plus the
# mean per-layer W4A4 / W8A8 RTN SQNR of every transform and how well the SQNR decomposition predicts it.
# Calibration (transform statistics, GPTQ Hessians) uses the 24,000 characters that follow the scored text.
#
# Usage: bench/llm_ptq.sh          (environment variables; defaults in brackets)
#   MODEL [../shared/assets/llama2c/stories260K.bin]   TOK [tokenizer, default: next to the model]
#   NAME  [stories260K]                                 OUT [bench/results/llm_ptq]
#   CONFIGS    [w8a8 w4a16g32 w4a8 w4a4]  (bench/configs/llm_<c>.json, or <NAME>_<c>.json when present)
#   TRANSFORMS [none smoothquant rms quarot blockcat:k=4]    CTX_CONFIGS [w4a8 w4a4] (also at 512 tokens)
#   WEIGHTS    [rtn gptq]   CTX [512] the longer-context window ("" to skip it)
set -euo pipefail
cd "$(dirname "$0")/.."
CATQ=${CATQ:-build/catq}
S=${SHARED:-../shared}/assets
MODEL=${MODEL:-$S/llama2c/stories260K.bin}
NAME=${NAME:-stories260K}
TEXT=${TEXT:-$S/text/tinystories_valid_head.txt}
OUT=${OUT:-bench/results/llm_ptq}/$NAME
CONFIGS=${CONFIGS:-"w8a8 w4a16g32 w4a8 w4a4"}
TRANSFORMS=${TRANSFORMS:-"none smoothquant rms quarot blockcat:k=4"}
CTX_CONFIGS=${CTX_CONFIGS:-"w4a8 w4a4"}   # configs also scored with 512-token windows
WEIGHTS=${WEIGHTS:-"rtn gptq"}
CTX=${CTX-512}                            # the longer-context protocol's window ("" for none: models of context < 512)
TOKARG=(); [ -n "${TOK:-}" ] && TOKARG=(--tokenizer "$TOK")
mkdir -p "$OUT"
log=$OUT/commands.txt
: > "$log"
config_file() { if [ -f "bench/configs/${NAME}_$1.json" ]; then echo "bench/configs/${NAME}_$1.json"; else echo "bench/configs/llm_$1.json"; fi; }
safe() { echo "$1" | tr ':=' '__'; }
run() {  # FILE ARGS... : catq --json eval, cached in FILE
  local f=$1; shift
  [ -s "$f" ] && return 0
  echo "catq --json eval $*" >> "$log"
  "$CATQ" -q --json eval "$@" > "$f.tmp" && mv "$f.tmp" "$f"
}
PROTOS=("ref|")
[ -n "$CTX" ] && PROTOS+=("ctx$CTX|--window $CTX")
for p in "${PROTOS[@]}"; do
  tag=${p%%|*}; extra=${p#*|}
  # shellcheck disable=SC2086
  run "$OUT/fp32_$tag.json" "$MODEL" "${TOKARG[@]}" --text "$TEXT" $extra
  cfgs=$CONFIGS; [ "$tag" != ref ] && cfgs=$CTX_CONFIGS
  for c in $cfgs; do for t in $TRANSFORMS; do for w in $WEIGHTS; do
    echo ">> $NAME $tag $c $t $w" >&2
    # shellcheck disable=SC2086
    run "$OUT/${c}_$(safe "$t")_${w}_$tag.json" "$MODEL" "${TOKARG[@]}" --text "$TEXT" $extra --quant "$(config_file "$c")" \
      --transform "$t" --weights "$w" --calib-chars 24000
  done; done; done
done
for bits in 4 8; do for t in $TRANSFORMS; do
  f=$OUT/sqnr_w${bits}_$(safe "$t").json
  [ -s "$f" ] && continue
  echo "catq --json analyze $MODEL --text $TEXT --bits $bits --transform $t --skip-chars 12000 --max-chars 24000" >> "$log"
  "$CATQ" -q --json analyze "$MODEL" "${TOKARG[@]}" --text "$TEXT" --bits "$bits" --transform "$t" --skip-chars 12000 --max-chars 24000 > "$f"
done; done

{
echo "### $NAME"
echo
for p in "${PROTOS[@]}"; do
  tag=${p%%|*}
  fp=$(jq -r '.fp32.ppl' "$OUT/fp32_$tag.json")
  if [ "$tag" = ref ]; then echo "Perplexity, reference protocol (256-token windows). FP32: $(printf %.4f "$fp")."
  else echo "Perplexity, longer context ($CTX-token windows). FP32: $(printf %.4f "$fp")."; fi
  echo
  printf "| config | weights |"; for t in $TRANSFORMS; do printf " %s |" "$t"; done; echo
  printf "|---|---|"; for t in $TRANSFORMS; do printf -- "---:|"; done; echo
  cfgs=$CONFIGS; [ "$tag" != ref ] && cfgs=$CTX_CONFIGS
  for c in $cfgs; do for w in $WEIGHTS; do
    printf "| %s | %s |" "${c^^}" "$w"
    for t in $TRANSFORMS; do
      f=$OUT/${c}_$(safe "$t")_${w}_$tag.json
      if [ -s "$f" ]; then printf " %.3f |" "$(jq -r '.quantized.ppl' "$f")"; else printf " – |"; fi
    done
    echo
  done; done
  echo
done
echo "Mean per-layer RTN output SQNR (dB) over all linear layers (per-token activations, per-channel weights,"
echo "symmetric), measured / predicted by the decomposition, and the mean |predicted − measured|."
echo
printf "| bits |"; for t in $TRANSFORMS; do printf " %s |" "$t"; done; echo
printf "|---|"; for t in $TRANSFORMS; do printf -- "---:|"; done; echo
for bits in 4 8; do
  printf "| W%sA%s measured / predicted (error) |" "$bits" "$bits"
  for t in $TRANSFORMS; do
    f=$OUT/sqnr_w${bits}_$(safe "$t").json
    key=$([ "$t" = none ] && echo before_summary || echo after_summary)
    printf " %s |" "$(jq -r --arg k "$key" '.[$k] | "\(.mean_measured_db*100|round/100) / \(.mean_predicted_db*100|round/100) (\(.mean_abs_prediction_error_db*100|round/100))"' "$f")"
  done
  echo
done
echo
echo "Mean alignment A and concentration C(x)∥C(W) (dB), W4A4:"
echo
printf "| |"; for t in $TRANSFORMS; do printf " %s |" "$t"; done; echo
printf "|---|"; for t in $TRANSFORMS; do printf -- "---:|"; done; echo
for q in mean_alignment_db mean_concentration_db; do
  printf "| %s |" "$q"
  for t in $TRANSFORMS; do
    f=$OUT/sqnr_w4_$(safe "$t").json
    key=$([ "$t" = none ] && echo before_summary || echo after_summary)
    printf " %.2f |" "$(jq -r --arg k "$key" --arg q "$q" '.[$k][$q]' "$f")"
  done
  echo
done
} | tee "$OUT/table.md"
