// AWQ (activation-aware weight quantization, Lin et al. 2024) as a function-preserving diagonal transform for
// weight-only quantization: at every position of a block (methods/llm/transform_ops.h: attn, ffn, down, o) the input
// channels are scaled by
//   s = a^α / √(max a^α · min a^α),   a_j = √E[x_j²] (the channel's RMS over the calibration inputs),
// the consumers' weights W ← W·diag(s) and the activations x ← x/s folded offline (into the RMSNorm weights, the
// rows of ffn_up, the rows of V: apply_diagonal), so the model computes the same function in any runtime, llama.cpp's
// unchanged graph included. Salient channels (large a) get larger weights and so finer steps on the quantizer's grid.
// α is chosen per position from {0, 1/grid, …, 1} to minimise the consumers' output error under the quantizer that
// will actually run,
//   Σ_consumers tr(ΔW Σ_x ΔWᵀ),   ΔW = Q(W·diag(s))·diag(s)⁻¹ − W,
// with Σ_x the inputs' second moments (full, or the diagonal blocks collect_block_stats kept). α = 0 (s = 1) is in the
// grid, so a position is never made worse on this objective. O positions (V → O, per KV head) share one α.
#pragma once
#include <cstdint>
#include <functional>

#include <nlohmann/json.hpp>

#include "llm/llama.h"
#include "methods/llm/calib_stats.h"
#include "sim/sim_quant.h"

namespace catq {

// The quantizer a weight will get, as its dequantized values: (the linear's index in layer_infos(), fp32 [out, in]).
using WeightQuantizer = std::function<at::Tensor(int64_t linear, const at::Tensor& w)>;

struct AwqOptions {
  int grid = 20;  // α ∈ {0, 1/grid, …, 1}
};

// The diagonal block size of Σ AWQ collects: the objective's Σ_x in blocks of 128 (full where a dimension is smaller
// or not a multiple of it).
inline constexpr int64_t kAwqStatsBlock = 128;

// The weights' quantizer of a SimQuant bound to a model with these layers: each linear fake-quantized with its weight
// spec (params from its observer), floating-point layers unchanged.
WeightQuantizer simquant_weight_quantizer(const SimQuant& sq, const std::vector<LayerInfo>& layers);

// Searches and applies AWQ's scales to block l of m (weights fp32) from its statistics; returns the chosen α and the
// objective before / after per position.
nlohmann::json apply_awq_block(LlamaModel& m, int64_t l, const BlockStats& stats, const WeightQuantizer& q,
                               const AwqOptions& o = {});

}  // namespace catq
