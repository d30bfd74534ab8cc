// Torch-free inner loop of GPTQ (methods/llm/gptq.h): one lazy batch of columns, row by row. Rows are independent
// given the factor, so callers split rows over threads and results do not depend on the split.
//
// Layout: the batch's slice of the (column-permuted) weight W is rows × cnt floats, row-major with leading
// dimension ldw, updated in place; U is the batch's diagonal block of the upper Cholesky factor of H⁻¹, cnt × cnt,
// row-major, leading dimension ldu; scale / zero give each element's quantizer params (rows × cnt, leading
// dimension cnt, already gathered from the column's group); codes / deq (leading dimension ldc) and err (leading
// dimension cnt) receive, for each column i in order:
//
//   q_i = clamp(round(w_i / s_i) + z_i, qmin, qmax)   (true division, round half to even, as quantize())
//   d_i = (q_i − z_i) · s_i                            (as fake_quantize())
//   e_i = (w_i − d_i) / U_ii
//   w_k = w_k − e_i · U_ik  for i < k < cnt            (a product then a difference, never fused)
//
// The caller then applies the batch's error to the later columns (W[:, i2:] −= E · U[i1:i2, i2:], a GEMM).
// A scalar reference and an AVX-512F path (range_best_isa()) perform the same IEEE operations and give
// bit-identical results (tests/test_gptq_kernel.cpp).
#pragma once
#include <cstdint>

#include "quant/range_search.h"

namespace catq {

void gptq_batch_rows(int64_t rows, int64_t cnt, float* w, int64_t ldw, const float* u, int64_t ldu, const float* scale,
                     const float* zero, float qmin, float qmax, int32_t* codes, float* deq, int64_t ldc, float* err,
                     RangeIsa isa);

// The same batch on a fixed grid of levels (format-aware GPTQ, e.g. GGUF blocks): element i may take
// scale_i·level(c) + offset_i for the codes c ∈ [0, levels), level(c) = c or level_values[c] (ascending; nullptr =
// uniform). q_i is the nearest level to (w_i − offset_i) / scale_i (code 0 for scale 0 or NaN), d_i its value, and
// e_i, the update and the layouts as above (codes uint8). Scalar: the formats' level search has no SIMD path yet.
void gptq_batch_rows_grid(int64_t rows, int64_t cnt, float* w, int64_t ldw, const float* u, int64_t ldu,
                          const float* scale, const float* offset, int levels, const float* level_values,
                          uint8_t* codes, float* deq, int64_t ldc, float* err);

}  // namespace catq
