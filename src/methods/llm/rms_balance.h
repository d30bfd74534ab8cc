// RMS balance (methods.md §4): block CAT with k = 1, a diagonal transform at every position
// (methods/llm/transform_ops.h), folded offline,
//   x_i ← m_i·x_i,   m_i = (Σ_j W_ji² / E[x_i²])^(1/4).
#pragma once
#include <vector>

#include "llm/llama.h"
#include "methods/llm/calib_stats.h"

namespace catq {

// Applies RMS balance; `stats` are collected on the untransformed model.
void apply_rms_balance(LlamaModel& m, const std::vector<BlockStats>& stats);
// Block l only, from its statistics (apply_rms_balance == this for every block).
void apply_rms_balance_block(LlamaModel& m, int64_t l, const BlockStats& stats);

}  // namespace catq
