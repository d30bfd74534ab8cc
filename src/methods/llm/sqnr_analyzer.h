// SQNR analysis of linear layers (methods.md §4): why a layer quantizes badly — concentration or alignment.
//
// For y = W x with per-token activation and per-output-channel weight quantization (RTN):
//   measured   SQNR = E‖Wx‖² / E‖Wx − W̃x̃‖²
//   predicted  SQNR ≈ 12·N² · (C(x) ∥ C(W)) · A(x, W),  a ∥ b = (1/a + 1/b)⁻¹
//   N          intervals over a row's range: qmax − qmin (asymmetric), 2·qmax (symmetric)
//   C(x)       = E‖x‖² / E[r(x)²],  r = 2·max|x_i| (symmetric) or max − min (asymmetric), per token
//   C(W)       = ‖W‖_F² / Σ_rows r(w_j)²
//   A(x, W)    = E‖Wx‖² / (‖W‖_F² · E‖x‖²) ∈ (0, 1]; rotation-invariant
//   best A     = Σσ_i² / (Σσ_i)², σ_i the singular values of W Σ_x^{1/2} (the best any input transform reaches)
#pragma once
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "llm/llama.h"
#include "quant/quantizer.h"

namespace catq {

struct SqnrStats {
  std::string layer;
  double measured_db = 0, predicted_db = 0;
  double act_concentration = 0, weight_concentration = 0, alignment = 0, best_alignment = 0;  // ratios
  int64_t tokens = 0;
};

// X: [n, in] input rows (tokens), W: [out, in]. act: per-token spec, weight: per-channel spec (uniform).
// Error(Config) for other granularities; Error(Data) for shape mismatches or an all-zero input.
SqnrStats linear_sqnr(const at::Tensor& x, const at::Tensor& w, const QuantSpec& act, const QuantSpec& weight);

// Every linear layer of the model (in execution order, the LM head last) on token windows [N, T]: the inputs
// each layer sees (after any online transform), at most max_tokens rows per layer (evenly strided).
std::vector<SqnrStats> analyze_llama_sqnr(const LlamaModel& m, const at::Tensor& tokens, const QuantSpec& act,
                                          const QuantSpec& weight, int64_t max_tokens = 4096, int64_t batch = 8);

// Per-token symmetric activation and per-channel symmetric weight specs at b bits (the analysis default).
QuantSpec sqnr_act_spec(int bits, bool symmetric = true);
QuantSpec sqnr_weight_spec(int bits, bool symmetric = true);

inline double to_db(double ratio) { return 10.0 * std::log10(ratio); }

}  // namespace catq
