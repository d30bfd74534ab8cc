// SmoothQuant (methods.md §4): a diagonal transform at every position (methods/llm/transform_ops.h), folded offline,
//   s_j = max|x_j|^α / max_i|W_ij|^(1−α)   (max over the consumers' weights),   x ← x/s.
#pragma once
#include <vector>

#include "llm/llama.h"
#include "methods/llm/calib_stats.h"

namespace catq {

// Applies SmoothQuant with migration strength α ∈ [0, 1]; `stats` are collected on the untransformed model.
void apply_smoothquant(LlamaModel& m, const std::vector<BlockStats>& stats, double alpha);
// Block l only, from its statistics (apply_smoothquant == this for every block).
void apply_smoothquant_block(LlamaModel& m, int64_t l, const BlockStats& stats, double alpha);

}  // namespace catq
