#!/usr/bin/env bash
# The layer rule (docs/architecture.md): a file under src/F/ may include only headers of F itself and of the
# folders listed for F below (its lower layers). Every project include names its folder ("folder/file.h").
# Exits 1 listing each include that breaks the rule, or a src/ folder missing from the table.
set -euo pipefail
SRC="${1:-$(dirname "$0")/../src}"

declare -A ALLOWED=(
  [core]=""
  [quant]="core"
  [ir]="core"
  [data]="core"
  [train]="core data"
  [sim]="core quant ir"
  [llm]="core quant train"
  [io]="core quant ir data sim llm"
  [runtime]="core quant ir data sim llm io"
  [eval]="core quant ir data sim llm"
  [methods]="core quant ir data train sim llm io runtime eval"
  [demo]="core quant ir data train sim llm io runtime eval methods"
  [cli]="core quant ir data train sim llm io runtime eval methods demo"
)

bad=0
for dir in "$SRC"/*/; do
  folder=$(basename "$dir")
  if [ -z "${ALLOWED[$folder]+set}" ]; then
    echo "check_layers: src/$folder has no entry in the layer table of scripts/check_layers.sh" >&2
    bad=1
    continue
  fi
  allowed=" $folder ${ALLOWED[$folder]} "
  while IFS= read -r hit; do
    file=${hit%%:*}
    rest=${hit#*:}; line=${rest%%:*}
    inc=$(sed -E 's/.*#include "([^"]+)".*/\1/' <<< "$rest")
    case "$inc" in
      */*) target=${inc%%/*} ;;
      *) echo "check_layers: ${file#"$SRC"/}:$line includes \"$inc\" without its folder" >&2; bad=1; continue ;;
    esac
    if [[ "$allowed" != *" $target "* ]]; then
      echo "check_layers: ${file#"$SRC"/}:$line: $folder/ includes $inc (allowed: ${ALLOWED[$folder]:-nothing})" >&2
      bad=1
    fi
  done < <(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$dir" --include='*.h' --include='*.cpp' || true)
done
if [ "$bad" -ne 0 ]; then
  echo "check_layers: FAILED (layer order and rule: docs/architecture.md)" >&2
  exit 1
fi
echo "check_layers: every include points down the layers"
