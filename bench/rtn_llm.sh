#!/usr/bin/env bash
# RTN perplexity of stories260K under the reference protocol (../shared/README.md: first 12,000 characters of
# tinystories_valid_head.txt, 256-token windows [BOS, t0..t254]) for FP32, W8A8, W4A16 (groups of 32) and W4A4
# (per-token activations). Static activation ranges are calibrated on the text that follows the scored prefix.
# Usage: bench/rtn_llm.sh   — writes a markdown table to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
CATQ=${CATQ:-build/catq}
S=${SHARED:-../shared}/assets
M=$S/llama2c/stories260K.bin
T=$S/text/tinystories_valid_head.txt
echo "| config | perplexity | mean NLL (nats) | KL(FP‖Q) | top-1 agreement % |"
echo "|---|---:|---:|---:|---:|"
fp=$("$CATQ" -q --json eval "$M" --text "$T" | jq -r '.fp32.ppl')
echo "| fp32 | $(printf %.4f "$fp") | – | 0 | 100 |"
for q in w8a8 bench/configs/stories260K_w4a16g32.json w4a4-tok; do
  "$CATQ" -q --json eval "$M" --text "$T" --quant "$q" |
    jq -r --arg q "$(basename "$q" .json)" '"| \($q) | \(.quantized.ppl*10000|round/10000) | \(.quantized.mean_nll*100000|round/100000) | \(.kl_mean*100000|round/100000) | \(.top1_agreement*10000|round/100) |"'
done
