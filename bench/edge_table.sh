#!/usr/bin/env bash
# Markdown tables from the per-run JSON of bench/edge_ptq.sh: per model, the float model and the official int8 file,
# then catq's PTQ rows — top-1 on the evaluation split as mean ± sample std over seeds (n runs), KL(FP‖Q) and top-1
# agreement with the float model (means), and the heads chosen by cross-validation. A head row whose selection
# declined (α = 0: no head stored) scores as its base. Usage: bench/edge_table.sh OUT_DIR
set -euo pipefail
OUT=${1:-bench/results/edge_ptq}
R=$OUT/runs
command -v jq >/dev/null || { echo "edge_table: needs jq (scripts/setup.sh installs it)" >&2; exit 1; }
stats() { awk '{x[NR]=$1; s+=$1} END {if (NR==0) {print "–"; exit} m=s/NR; v=0; for(i=1;i<=NR;i++) v+=(x[i]-m)^2;
  sd = NR>1 ? sqrt(v/(NR-1)) : 0; printf "%.2f ± %.2f (%d)", m, sd, NR}'; }
mean() { awk -v f="$1" '{s+=$1} END {if (NR==0) print "–"; else printf f, s/NR}'; }
pick() {  # jq field of a run: with the head when the file has one, else the base model
  jq -r "if .with_head then .with_head.$2 else .quantized.$2 end" "$1"
}
for key in ic vww kws; do
  [ -s "$R/${key}_fp32_all.json" ] || continue
  case $key in
    ic) title="ResNet-8, CIFAR-10 (calibration: 1,000 images of the calibration split; evaluation: the other 9,000)" ;;
    vww) title="MobileNetV1-0.25 96x96, visual wake words (calibration: 200 records; evaluation: the other 800)" ;;
    kws) title="DS-CNN, keyword spotting (calibration: 200 records; evaluation: the other 800)" ;;
  esac
  echo "### $key: $title"
  echo
  fa=$(jq -r '.fp32.top1' "$R/${key}_fp32_all.json"); fe=$(jq -r '.fp32.top1' "$R/${key}_fp32_eval.json")
  echo "| model | top-1 all records | top-1 eval split | KL(FP‖Q) eval | agreement eval |"
  echo "|---|---|---|---|---|"
  printf "| float32 (.tflite, catq's import) | %.2f | %.2f | – | – |\n" "$fa" "$fe"
  if [ -s "$R/${key}_tflite_int8_eval.json" ]; then
    ia=$(jq -r '.int8.top1' "$R/${key}_tflite_int8_all.json"); ie=$(jq -r '.int8.top1' "$R/${key}_tflite_int8_eval.json")
    ik=$(jq -r '.int8.kl' "$R/${key}_tflite_int8_eval.json"); ig=$(jq -r '.int8.top1_agreement' "$R/${key}_tflite_int8_eval.json")
    printf "| official int8 .tflite (TFLite converter), catq's integer executor | %.2f | %.2f | %.4f | %.2f %% |\n" \
      "$ia" "$ie" "$ik" "$ig"
  fi
  echo
  echo "| bits | method | top-1 eval (mean ± std, n) | Δ vs FP | KL(FP‖Q) | agreement | heads (K, α) |"
  echo "|---|---|---|---|---|---|---|"
  for b in w8a8 w4a8 w4a4 w2a4; do
    for meth in rtn qdrop; do
      for head in "" "+affine" "+cat"; do
        files=()
        for f in "$R"/${key}_${b}_${meth}_s*${head}.eval.json; do
          [[ -s $f && $(basename "$f") =~ ^${key}_${b}_${meth}_s[0-9]+${head//+/\\+}\.eval\.json$ ]] && files+=("$f")
        done
        [ ${#files[@]} -eq 0 ] && continue
        t=$(for f in "${files[@]}"; do pick "$f" top1; done | stats)
        d=$(for f in "${files[@]}"; do pick "$f" top1; done | awk -v fp="$fe" '{s+=$1} END {printf "%+.2f", s/NR-fp}')
        k=$(for f in "${files[@]}"; do pick "$f" kl; done | mean "%.4f")
        a=$(for f in "${files[@]}"; do pick "$f" top1_agreement; done | mean "%.2f %%")
        hs="–"
        if [ -n "$head" ]; then
          hs=$(for f in "${files[@]}"; do jq -r 'if .with_head then "K=\(.with_head.k) α=\(.with_head.alpha)" else "declined" end' "$f"; done |
            paste -sd ';' | sed 's/;/; /g')
        fi
        label=$( [ "$meth" = rtn ] && echo "RTN" || echo "QDrop")
        case $head in +affine) label="$label + plain affine" ;; +cat) label="$label + CAT" ;; esac
        echo "| ${b^^} | $label | $t | $d | $k | $a | $hs |"
      done
    done
  done
  echo
done
