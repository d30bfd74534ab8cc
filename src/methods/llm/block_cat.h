// Block CAT (methods.md §4): at every position (methods/llm/transform_ops.h)
//   M̂ = (Σ_w # Σ_x⁻¹)^{1/2} per diagonal k×k block (Σ damped by ε·tr/d), then T = H·M̂ with a Hadamard H of the
//   full dimension (per head for o): raises alignment, restores concentration.
// k = 1 without the Hadamard is RMS balance (methods/llm/rms_balance.h).
#pragma once
#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "llm/llama.h"
#include "methods/llm/calib_stats.h"

namespace catq {

// Matrix geometric mean A # B of symmetric positive definite matrices.
at::Tensor geometric_mean(const at::Tensor& a, const at::Tensor& b);
// Alignment-optimal M̂ = (Σ_w # Σ_x⁻¹)^{1/2} per diagonal block of size k (k must divide d), both damped by
// damping·tr/d. Σ_x and Σ_w may be full [d, d] or their diagonal blocks (calib_stats.h). Error(Config) when k
// does not divide d.
at::Tensor block_alignment_transform(const at::Tensor& sigma_x, const at::Tensor& sigma_w, int64_t k, double damping);
// The same M̂ as its diagonal blocks [d/k, k, k] (what the online transform stores).
at::Tensor block_alignment_blocks(const at::Tensor& sigma_x, const at::Tensor& sigma_w, int64_t k, double damping);
// Applies block CAT with block size k (dividing dim and hidden_dim, and dividing or a multiple of the head size;
// Error(Config) otherwise) and damping ε; hadamard_after = false uses T = M̂. The Hadamards use seed + 30.
// `stats` are collected on the untransformed model.
void apply_block_cat(LlamaModel& m, const std::vector<BlockStats>& stats, int64_t k, double damping,
                     bool hadamard_after, uint64_t seed);

// Pieces for block-by-block pipelines: apply_block_cat == check_block_cat, then every block from its statistics.
void check_block_cat(const LlamaConfig& c, int64_t k);  // Error(Config) unless k fits every position
void apply_block_cat_block(LlamaModel& m, int64_t l, const BlockStats& stats, int64_t k, double damping,
                           bool hadamard_after, uint64_t seed);

}  // namespace catq
