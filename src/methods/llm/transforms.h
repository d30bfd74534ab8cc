// Function-preserving transforms of a Llama model (methods.md §4): choosing a method and applying it.
//
// The pieces, one header each:
//   calib_stats.h     the calibration statistics (Σ_x and max |x| per position) and their collection
//   transform_ops.h   the positions, the consumers' statistics, applying diagonal / full transforms, RMSNorm
//                     folding, residual rotation, Hadamard and random orthogonal matrices
//   smoothquant.h     smoothquant(α)   diagonal, s_j = max|x_j|^α / max_i|W_ij|^(1−α)
//   rms_balance.h     rms_balance      block CAT with k = 1, m_i = (Σ_j W_ji² / E[x_i²])^(1/4)
//   quarot.h          quarot(kind)     RMSNorm folded, residual stream rotated, online/per-head Hadamards
//   block_cat.h       block_cat(k, ε)  T = H·M̂, M̂ = (Σ_w # Σ_x⁻¹)^{1/2} per diagonal k×k block
//   awq.h             awq(grid)        diagonal, s = a^α (a the channels' RMS), α searched under the weights' quantizer
// This header includes them all.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "llm/llama.h"
#include "methods/llm/awq.h"
#include "methods/llm/block_cat.h"
#include "methods/llm/calib_stats.h"
#include "methods/llm/quarot.h"
#include "methods/llm/rms_balance.h"
#include "methods/llm/smoothquant.h"
#include "methods/llm/transform_ops.h"

namespace catq {

struct LlmTransformOptions {
  std::string method = "none";  // none | smoothquant | rms | quarot | rotation (random orthogonal) | blockcat | awq
  double alpha = 0.5;           // smoothquant
  int64_t block = 16;           // blockcat: k (must divide dim, hidden_dim and head_dim)
  double damping = 0.01;        // ε of Σ + ε·tr/d·I
  bool hadamard_after = true;   // blockcat: T = H·M̂ (false: M̂ only)
  int grid = 20;                // awq: α ∈ {0, 1/grid, …, 1}
  uint64_t seed = 0;
  std::string str() const;      // e.g. "blockcat:k=16"
};
// Parses "none", "smoothquant[:alpha=0.5]", "rms", "quarot", "rotation", "blockcat[:k=16][:damp=0.01][:nohad]",
// "awq[:grid=20]".
LlmTransformOptions parse_llm_transform(const std::string& s);
// Applies the method in place; `stats` are collected on the untransformed model (quarot/rotation need none).
// Error(Config) for a block size that does not divide a dimension.
// awq searches its scales under `q`, the weights' quantizer (Error(Usage) without one). Returns
// LlmBlockTransformer::report().
nlohmann::json apply_llm_transform(LlamaModel& m, const std::vector<BlockStats>& stats, const LlmTransformOptions& o,
                         const WeightQuantizer& q = {});

// True for the methods that need calibration statistics (smoothquant, rms, blockcat, awq).
bool llm_transform_needs_stats(const LlmTransformOptions& o);
// The diagonal block size of Σ the method reads (the `block` of collect_llama_stats): k for blockcat, 1 for
// smoothquant and rms (diagonal / max |x| only), kAwqStatsBlock for awq, 0 (full Σ) otherwise.
int64_t llm_transform_stats_block(const LlmTransformOptions& o);

// The transform block by block (layer-streamed pipelines): the constructor checks the options and transforms the
// model's ends (QuaRot / rotation: the final RMSNorm folded into the head, which unties it, embeddings and head
// rotated); block(l, stats) then transforms block l from its own statistics (collected on the FP model, for the
// methods that need them). apply_llm_transform == the constructor + block(l, &stats[l]) for l = 0, 1, ...
class LlmBlockTransformer {
 public:
  // q: the weights' quantizer (awq only).
  LlmBlockTransformer(LlamaModel& m, const LlmTransformOptions& o, WeightQuantizer q = {});
  void block(int64_t l, const BlockStats* stats);
  const LlmTransformOptions& options() const { return o_; }
  // What the method chose per block (awq: α and the objective per position), an array; empty for the others.
  const nlohmann::json& report() const { return report_; }

 private:
  LlamaModel& m_;
  LlmTransformOptions o_;
  WeightQuantizer q_awq_;
  nlohmann::json report_ = nlohmann::json::array();
  at::Tensor q_;  // the residual rotation (quarot / rotation)
  RotationKind kind_ = RotationKind::Hadamard;
};

}  // namespace catq
