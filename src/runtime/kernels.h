// Low-bit CPU kernels on PackedWeights (runtime/packed.h), with run-time ISA dispatch. Every SIMD path has the
// scalar reference next to it and is tested against it (tests/test_kernels.cpp) on random shapes.
//
//   gemv_packed  y[r] = Σ_j W[r][j]·x[j] for packed W (weights 8/4/2-bit, float activations: W8A16/W4A16/W2A16).
//                Per group g: s_g·(Σ_j q_j·x_j − z_g·Σ_j x_j); the Σ_j x_j of each group is computed once per
//                call and shared by all rows. Codes are expanded to float in registers (never to memory).
//   gemm_packed  Y[i][r] = Σ_j X[i][j]·W[r][j] for M rows of X: M calls of the GEMV (batched GEMV; the
//                compute-bound M ≥ 32 case is left to oneDNN / future tiling).
// ISAs: scalar (portable C++), avx2 (AVX2 + FMA, 8 lanes), avx512 (AVX-512F, 16 lanes). best_isa() picks the
// widest the CPU supports; CATQ_ISA=scalar|avx2|avx512 in the environment caps it. A SIMD path needs
// group % 16 == 0; other groups run the scalar loop.
#pragma once
#include <cstdint>

#include "runtime/packed.h"

namespace catq {

enum class KernelIsa { Scalar, Avx2, Avx512 };
const char* to_string(KernelIsa isa);
bool isa_supported(KernelIsa isa);  // by this CPU
KernelIsa best_isa();

// x: cols floats; y: rows floats. Error(Usage) for an ISA this CPU lacks; w must be valid (validate()).
void gemv_packed(const PackedWeights& w, const float* x, float* y, KernelIsa isa);
void gemv_packed(const PackedWeights& w, const float* x, float* y);
// x: m × cols (row-major); y: m × rows.
void gemm_packed(const PackedWeights& w, const float* x, int64_t m, float* y, KernelIsa isa);
void gemm_packed(const PackedWeights& w, const float* x, int64_t m, float* y);

}  // namespace catq
