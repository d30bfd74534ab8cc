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
// Rows [r0, r1) only (y indexed by absolute row), for a caller that splits the rows across threads: each row's result
// equals the whole-matrix call's, whatever the split.
void gemv_packed_rows(const PackedWeights& w, const float* x, float* y, int64_t r0, int64_t r1, KernelIsa isa);
// x: m × cols (row-major); y: m × rows.
void gemm_packed(const PackedWeights& w, const float* x, int64_t m, float* y, KernelIsa isa);
void gemm_packed(const PackedWeights& w, const float* x, int64_t m, float* y);

// The same GEMV with the activations as 16-bit integers ("A16" as int16 rather than fp16): x is quantized per weight
// group to int16 with scale a_g = max_{j∈g}|x_j| / 32767 (|error| ≤ a_g/2 = 2^-16 of the group's largest value,
// finer than fp16's 2^-11 relative step for every element within 32× of it), and each (row, group) is an exact
// integer dot product: y[r] = Σ_g s_rg·a_g·(Σ_j q_j·xq_j − z_rg·Σ_j xq_j). The codes never become floats:
// AVX-512 VNNI vpdpwssd multiplies 32 code × activation pairs per instruction, the codes unpacked from 16-bit words
// by shifts and masks only, against activations permuted once per call into that order. Scalar: the reference, the
// same integer sums (the float epilogue's order differs across ISAs). i16_supported(): the layout the SIMD path
// needs (cols a multiple of 64 / 128 / 256 codes for 8 / 4 / 2 bits, groups that tile those chunks); other layouts
// run the scalar loop. The SIMD path needs AVX-512BW + VNNI (i16_simd()); callers without it keep gemv_packed.
bool i16_simd();
// Codebook (k-means) GEMV: y[r] = Σ_j codebook[r][index(r, j)]·x[j] for PackedCodebook (2- or 3-bit indices,
// float activations). AVX-512: each codeword is looked up in registers — the row's codebook replicated to 16
// lanes, so vpermps can index with unmasked shifted index planes — and multiplied by x permuted once per call into
// the planes' order; columns a multiple of 256. Scalar: the reference (other shapes, other CPUs).
void gemv_codebook(const PackedCodebook& w, const float* x, float* y, KernelIsa isa);
void gemv_codebook(const PackedCodebook& w, const float* x, float* y);
bool i16_supported(const PackedWeights& w);
void gemv_packed_i16(const PackedWeights& w, const float* x, float* y, KernelIsa isa);
void gemv_packed_i16(const PackedWeights& w, const float* x, float* y);
void gemv_packed_i16_rows(const PackedWeights& w, const float* x, float* y, int64_t r0, int64_t r1, KernelIsa isa);

}  // namespace catq
