#!/usr/bin/env bash
# Markdown tables from the per-run JSON of bench/cnn_ptq.sh: top-1 on the evaluation split, mean ± sample std over
# seeds (n runs), wall time, and the CAT heads chosen by cross-validation. Usage: bench/cnn_ptq_table.sh OUT_DIR
set -euo pipefail
OUT=${1:-bench/results/cnn_ptq}
R=$OUT/runs
command -v jq >/dev/null || { echo "cnn_ptq_table: needs jq (scripts/setup.sh installs it)" >&2; exit 1; }
models=$(ls "$R" 2>/dev/null | sed -n 's/^\(resnet[0-9]*\)_.*\.eval\.json$/\1/p' | sort -u)
bits_all="w4a4 w2a4 w4a2 w2a2"
rows=("rtn|RTN (MSE)" "adaround|AdaRound" "brecq|BRECQ" "qdrop|QDrop" "pdquant|PD-Quant" "pdquant+affine|PD-Quant + plain affine"
      "pdquant+cat|PD-Quant + CAT" "brecq+cat|BRECQ + CAT" "wca|weight-cluster affine")

# top1 of one run: with the head when the file has one, else the base model.
top1() { jq -r 'if .with_head then .with_head.top1 else .quantized.top1 end' "$1"; }
# mean ± std of numbers on stdin
stats() { awk '{x[NR]=$1; s+=$1} END {if (NR==0) {print "–"; exit} m=s/NR; v=0; for(i=1;i<=NR;i++) v+=(x[i]-m)^2;
  sd = NR>1 ? sqrt(v/(NR-1)) : 0; printf "%.2f ± %.2f (%d)", m, sd, NR}'; }
mean() { awk '{s+=$1} END {if (NR==0) print "–"; else printf "%.0f", s/NR}'; }
# Run files of one model / bits / base method / head ("" or "+cat" / "+affine") with suffix SUF, one per seed.
runs() {
  local m=$1 b=$2 base=$3 head=$4 suf=$5 f
  for f in "$R"/${m}_${b}_${base}_s*${head}.$suf.json; do
    [[ -s $f && $(basename "$f") =~ ^${m}_${b}_${base}_s[0-9]+${head//+/\\+}\.$suf\.json$ ]] && echo "$f"
  done
  return 0  # no runs is not an error (set -e)
}

for m in $models; do
  fp=$(ls "$R"/${m}_*_rtn_s*.eval.json 2>/dev/null | head -1 || true)
  echo "### $m"
  echo
  echo "Top-1 % on the CIFAR-10 evaluation split (9,000 images), mean ± std over seeds (runs)."
  echo
  printf "| method |"; for b in $bits_all; do printf " %s |" "${b^^}"; done; echo
  printf "|---|"; for b in $bits_all; do printf -- "---:|"; done; echo
  for row in "${rows[@]}"; do
    key=${row%%|*}; label=${row#*|}
    base=${key%%+*}; head=""; [ "$key" != "$base" ] && head="+${key#*+}"
    printf "| %s |" "$label"
    for b in $bits_all; do
      vals=$(for f in $(runs "$m" "$b" "$base" "$head" eval); do top1 "$f"; done)
      printf " %s |" "$(printf '%s\n' "$vals" | grep -v '^$' | stats)"
    done
    echo
  done
  echo
  echo "Wall time per run in seconds (mean over seeds; quantize = calibration + reconstruction; heads = fitting only)."
  echo
  printf "| method |"; for b in $bits_all; do printf " %s |" "${b^^}"; done; echo
  printf "|---|"; for b in $bits_all; do printf -- "---:|"; done; echo
  for row in "${rows[@]}"; do
    key=${row%%|*}; label=${row#*|}
    base=${key%%+*}; head=""; [ "$key" != "$base" ] && head="+${key#*+}"
    printf "| %s |" "$label"
    for b in $bits_all; do
      vals=$(for f in $(runs "$m" "$b" "$base" "$head" quantize); do
        if [ -n "$head" ]; then jq -r '.head.seconds' "$f"; else jq -r '.seconds' "$f"; fi; done)
      printf " %s |" "$(printf '%s\n' "$vals" | grep -v '^$' | mean)"
    done
    echo
  done
  echo
  echo "Heads chosen by 5-fold cross-validation on the fitting images (K, α per seed; α = 0 means the selection declined"
  echo "the correction and no head is stored). Extra parameters and multiply-adds per image of the stored head."
  echo
  echo "| head | bits | chosen (K, α) per seed | extra params | MACs / image |"
  echo "|---|---|---|---:|---:|"
  for key in pdquant+affine pdquant+cat brecq+cat; do
    base=${key%%+*}; head="+${key#*+}"
    for b in $bits_all; do
      files=$(runs "$m" "$b" "$base" "$head" quantize)
      [ -z "$files" ] && continue
      chosen=$(for f in $files; do jq -r '"(\(.head.k), \(.head.alpha))"' "$f"; done | paste -sd ' ' -)
      params=$(for f in $files; do jq -r '.head.extra_params // 0' "$f"; done | sort -n | tail -1)
      macs=$(for f in $files; do jq -r '.head.macs_per_image // 0' "$f"; done | sort -n | tail -1)
      echo "| $key | ${b^^} | $chosen | $params | $macs |"
    done
  done
  echo
done
