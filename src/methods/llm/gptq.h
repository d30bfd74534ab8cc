// GPTQ (Frantar et al. 2022; methods.md §4): quantize a weight column by column, spreading each column's
// rounding error over the columns not yet quantized with the inverse-Hessian Cholesky factor.
//
//   H = Σ x xᵀ over calibration inputs (any positive scale), + damp·mean(diag H)·I (damp = 1 %)
//   dead inputs (diag H = 0): their weights are zeroed and H_ii = 1
//   act-order: columns in descending diag(H) order; quantizer params stay those of the original columns
//   ("static groups"), so per-group params are computed once from W before any update
//   U = chol(H⁻¹)ᵀ (upper); for column j: q_j = Q(w_j), e_j = (w_j − q_j)/U_jj, w_k −= e_j·U_jk for k > j
//   lazy batches of `block` columns: the update of the later columns is applied once per batch
//
// Precision and cost, as the reference implementation: W, U and the updates in fp32; H⁻¹'s factor without forming
// H⁻¹ (reverse-order Cholesky H = R Rᵀ, R upper, then U = R⁻¹: the unique upper factor with UᵀU = H⁻¹). The
// column loop is quant/gptq_kernel's fused row kernel; the batch updates are GEMMs. The factor depends on H only,
// so layers that share an input (q/k/v, gate/up) factor it once (gptq_factor).
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "quant/quantizer.h"

namespace catq {

struct GptqOptions {
  double damp = 0.01;   // fraction of the mean diagonal added to H
  bool act_order = false;
  int64_t block = 128;  // lazy-batch width
  // Rows are quantized independently given H's factor, so a weight goes this many values (rows × in) at a time: the
  // working set of an 8 B model's LM head stays ~100 MB instead of several × 2 GB. Results do not depend on it.
  int64_t row_slice = int64_t{1} << 23;
  bool keep_dequantized = true;  // false: GptqResult::dequantized stays undefined (saves a float copy)
};

struct GptqResult {
  at::Tensor codes;        // int32 [out, in]
  QuantParams params;      // per-channel or per-group params (computed from W with spec's observer)
  at::Tensor dequantized;  // float32 [out, in] (when GptqOptions::keep_dequantized)
  double proxy_rtn = 0;    // tr((W − Ŵ) H (W − Ŵ)ᵀ) of round-to-nearest with the same params
  double proxy_gptq = 0;   // the same for GPTQ (the objective GPTQ lowers)
};

// H prepared for GPTQ: damped, dead inputs handled, permuted (act-order) and factored.
struct GptqFactor {
  int64_t in = 0;
  at::Tensor dead;                 // bool [in]: inputs with H_ii = 0
  bool any_dead = false;
  std::vector<int64_t> order;      // position j of the quantization order -> original column
  at::Tensor perm, inv;            // long [in]: order as a tensor, and its inverse
  at::Tensor u;                    // float [in, in], upper, in the permuted order
  at::Tensor h32;                  // float [in, in]: H (dead diagonal = 1) for the report proxies
  double damp = 0;                 // damping used (o.damp, or more after a retry)
};
// Error(Data) for a non-square or non-finite H; a Hessian that is not positive definite even after damping is
// retried with 10× the damping (up to 3 times) before Error(Data).
GptqFactor gptq_factor(const at::Tensor& h, const GptqOptions& o);

// w: [out, in] float (finite); f: from gptq_factor(H, o) with H [in, in]; spec: uniform weight spec, per-channel (axis 0) or per-group (axis 1).
// Error(Config) for other specs, Error(Data) for shape mismatches or a non-finite weight.
GptqResult gptq_quantize(const at::Tensor& w, const GptqFactor& f, const QuantSpec& spec, const GptqOptions& o);
// gptq_quantize(w, gptq_factor(h, o), spec, o).
GptqResult gptq_quantize(const at::Tensor& w, const at::Tensor& h, const QuantSpec& spec, const GptqOptions& o);

// GPTQ onto a grid fixed per weight value before any update (static groups: e.g. the scales a GGUF encoder chose,
// io/gguf.h gguf_block_grid): value (r, i) may take scale·level(c) + offset, c ∈ [0, levels), level(c) = c or
// level_values[c] (ascending). The column loop is gptq_batch_rows_grid's; batches, act-order and row slices as above.
struct GptqGrid {
  at::Tensor scale, offset;         // float [out, in]
  int levels = 0;
  std::vector<float> level_values;  // empty: uniform
};
struct GptqGridResult {
  at::Tensor codes;        // uint8 [out, in]
  at::Tensor dequantized;  // float32 [out, in] (when GptqOptions::keep_dequantized)
  double proxy = 0;        // tr((W − Ŵ) H (W − Ŵ)ᵀ)
};
GptqGridResult gptq_quantize_grid(const at::Tensor& w, const GptqFactor& f, const GptqGrid& g, const GptqOptions& o);

}  // namespace catq
