#!/usr/bin/env bash
# Kernel benchmark (issue 5): packed W8A16 / W4A16 / W2A16 GEMV/GEMM vs oneDNN fp32 and int8 GEMM on LLM shapes,
# and the W4A16 GEMV's effective bandwidth vs this machine's measured read bandwidth. Single thread for all
# (OMP_NUM_THREADS=1) unless THREADS is set. Usage: bench/kernels.sh [--quick] [--reps N]
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --build build --target catq_bench_kernels > /dev/null
OMP_NUM_THREADS=${THREADS:-1} build/catq_bench_kernels "$@"
