// The lean LLM runtime's elementwise and attention passes on fp32 buffers (runtime/lean_llama.h): a scalar reference
// and an AVX-512 path each, chosen by `isa` (KernelIsa::Avx512 only where the CPU has AVX-512F; callers pass
// best_isa()). tests/test_lean_llama.cpp checks every SIMD path against the scalar one.
#pragma once
#include <cstdint>

#include "runtime/kernels.h"

namespace catq {

float vec_dot(const float* a, const float* b, int64_t n, KernelIsa isa);            // Σ a_i·b_i
void vec_axpy(float* y, float a, const float* x, int64_t n, KernelIsa isa);         // y += a·x
// y_i = x_i · g_i / sqrt(mean(x²) + eps) (the mean of squares accumulated in double in the scalar path); y may be x.
void vec_rms_norm(const float* x, const float* g, int64_t n, double eps, float* y, KernelIsa isa);
// g_i ← silu(g_i)·u_i = g_i / (1 + e^(−g_i)) · u_i. The AVX-512 path's exponential is a degree-6 polynomial on
// the reduced argument (relative error ≲ 2e-7 over the float range; ±inf / large magnitudes saturate as expf).
void vec_silu_mul(float* g, const float* u, int64_t n, KernelIsa isa);
// Softmax of x[0..n) in place (max subtracted), returns nothing; the same exponential as vec_silu_mul.
void vec_softmax(float* x, int64_t n, KernelIsa isa);

}  // namespace catq
